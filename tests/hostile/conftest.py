"""One running control plane for every hostile-input test of a module (they only ever get errors back)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from florist_grpc.testing.plane import ControlPlaneThread


@pytest.fixture(scope="module")
def hostile_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneThread]:
    running = ControlPlaneThread.in_dir(tmp_path_factory.mktemp("hostile") / "florist")
    yield running
    running.stop()
