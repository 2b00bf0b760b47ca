"""A control plane serving the dashboard (`--http-port`) with an auth file of three tokens, one per role."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from florist_grpc.net import free_service_port
from florist_grpc.testing.plane import ControlPlaneThread

TOKENS = {
    "admin": "admin-secret",
    "viewer": "viewer-secret",
    "agent": "agent-secret",
    # Bound to the project alpha: a viewer, and an operator.
    "alpha-viewer": "alpha-viewer-secret",
    "alpha-operator": "alpha-operator-secret",
}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(role: str) -> tuple[tuple[str, str]]:
    """gRPC metadata carrying `role`'s token."""
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def headers(role: str) -> dict[str, str]:
    """HTTP headers carrying `role`'s token."""
    return {"authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class Dashboard:
    plane: ControlPlaneThread

    @property
    def url(self) -> str:
        """The dashboard's origin, `http://127.0.0.1:PORT` (no trailing slash: clients append method paths)."""
        return f"http://127.0.0.1:{self.plane.settings.http_port}"


def write_auth_file(path: Path) -> Path:
    path.write_text(
        f"admin {sha(TOKENS['admin'])} ops\nviewer {sha(TOKENS['viewer'])} collaborator\n"
        f"agent {sha(TOKENS['agent'])} site-a\n"
        f"viewer {sha(TOKENS['alpha-viewer'])} alice alpha\n"
        f"operator {sha(TOKENS['alpha-operator'])} bob alpha\n"
    )
    return path


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """A plane with an auth file and the dashboard on a free port (no launcher pool: nothing trains here)."""
    auth_file = write_auth_file(tmp_path / "tokens")
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", auth_file=auth_file, http_port=free_service_port(), launcher_pool=False
    )
    yield Dashboard(plane)
    plane.stop()


@pytest.fixture
def open_dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """A plane without an auth file (loopback only), with the dashboard on a free port."""
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", http_port=free_service_port(), launcher_pool=False)
    yield Dashboard(plane)
    plane.stop()
