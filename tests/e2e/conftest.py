from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from florist_grpc.testing.plane import ControlPlaneThread
from tests.e2e.sites import AgentProcess, start_agent

BIN = Path(sys.executable).parent


@dataclass
class Served:
    process: subprocess.Popen[str]
    address: str
    data_dir: Path
    ready_line: str = ""  # as printed: text, or a JSON object under --log-format json


def serve(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Served:
    """Start `florist-grpc serve` and wait for its ready line."""
    process = subprocess.Popen(
        [str(BIN / "florist-grpc"), "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=open(data_dir.parent / f"{data_dir.name}-serve.log", "a"),  # noqa: SIM115 - closed with the process
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the ready line (or EOF if it failed to start)
    if "listening on" not in line:
        process.kill()
        raise AssertionError(f"serve did not start: {line!r}; see {data_dir.parent}")
    # `--log-format json` prints the same line as the `message` of a JSON object.
    text = json.loads(line)["message"] if line.startswith("{") else line
    return Served(process, text.strip().rsplit(" ", 1)[-1], data_dir, line)


def stop(served: Served) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    return served.process.wait(30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = serve(tmp_path / "florist")
    yield running
    stop(running)


@pytest.fixture
def site_root(tmp_path: Path, demo_data: list[str]) -> Path:
    root = tmp_path / "site-a"
    root.mkdir()
    shutil.copy(demo_data[0], root / "mine.pt")
    return root


@pytest.fixture
def site(plane: ControlPlaneThread, site_root: Path) -> Iterator[AgentProcess]:
    agent = start_agent(plane.address, "site-a", site_root)
    yield agent
    assert agent.stop() == 0
