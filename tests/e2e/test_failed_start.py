"""A `serve` that cannot start says which step failed (port and flag), exits non-zero, and stops everything it had
started: no embedded Redis or launcher pool outlives it, and none holds the caller's output (`serve ... | tail`
ends). Steps later in the start, which a command line cannot make fail, fail here in-process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import NoReturn

import psutil
import pytest

from florist_grpc.config import Settings
from florist_grpc.net import free_service_port, listen_problem
from florist_grpc.server import ControlPlane
from florist_grpc.startup import StartFailed
from florist_grpc.store.data_dir_lock import DataDirLock
from tests.e2e.conftest import BIN
from tests.helpers import wait_for

# The output pipe must reach EOF this soon after a failed start (a leftover Redis once held it for good).
EOF_BOUND_SECONDS = 30


def _started_by(mark: str, data_dir: Path) -> list[psutil.Process]:
    """Live processes a serve run with FLORIST_TEST_MARK=mark started, directly or not: those with the mark in
    their environment, and those working in its data dir (redis-server overwrites its environment with its
    process title, and works in the directory of its data)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("FLORIST_TEST_MARK") == mark or Path(process.cwd()).is_relative_to(data_dir):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _failed_serve(data_dir: Path, *args: str) -> tuple[int, str]:
    """Run serve as `serve ... 2>&1 | cat` would; its exit code and output once the pipe is closed. Asserts that
    no process it started survives."""
    mark = uuid.uuid4().hex
    process = subprocess.Popen(
        [str(BIN / "florist-grpc"), "serve", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FLORIST_TEST_MARK": mark},
    )
    try:
        output, _ = process.communicate(timeout=EOF_BOUND_SECONDS)  # returns at EOF of the pipe, not at exit
    finally:
        process.kill()
        leftovers = _started_by(mark, data_dir.resolve())
        for leftover in leftovers:
            leftover.kill()
    assert not leftovers, [p.cmdline() for p in leftovers]
    return process.returncode, output


def _assert_released(data_dir: Path) -> None:
    lock = DataDirLock(data_dir)
    lock.acquire()  # raises DataDirInUse while anyone holds it
    lock.release()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_metrics_port_in_use_is_named_with_its_flag_and_nothing_is_left_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _failed_serve(tmp_path / "florist", "--port", "0", "--metrics-port", str(port))
    assert code != 0
    assert _error_lines(output) == [
        f"error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], output
    assert len(output.splitlines()) == 1, output
    _assert_released(tmp_path / "florist")


def test_a_grpc_port_in_use_is_named_with_its_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _failed_serve(tmp_path / "florist", "--port", str(port))
    assert code != 0
    assert _error_lines(output) == [f"error: --port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert len(output.splitlines()) == 1, output  # and nothing else: gRPC never tried the port


def test_a_dashboard_port_in_use_is_named_with_its_flag_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _failed_serve(tmp_path / "florist", "--port", "0", "--http-port", str(port))
    assert code != 0
    (line,) = _error_lines(output)
    assert line.startswith(f"error: --http-port {port}:"), output
    assert "Address already in use" in line
    _assert_released(tmp_path / "florist")


def test_the_same_port_for_grpc_and_metrics_is_refused_naming_both_flags(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, output = _failed_serve(tmp_path / "florist", "--port", str(port), "--metrics-port", str(port))
    assert code == 2
    (line,) = _error_lines(output)
    assert f"--metrics-port {port} is also --port" in line


def test_an_embedded_redis_that_cannot_start_stops_the_launcher_pool_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "florist"
    data_dir.mkdir()
    (data_dir / "redis").write_text("not a directory")  # where the embedded Redis keeps its data
    code, output = _failed_serve(data_dir, "--port", "0")
    assert code != 0
    (line,) = _error_lines(output)
    assert line.startswith(f"error: starting the embedded Redis in {data_dir / 'redis'}:"), output
    _assert_released(data_dir)


def _live_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


@pytest.mark.parametrize(
    ("function", "step"),
    [
        ("open_store", "opening the job store"),  # the launcher pool runs
        ("load_catalog", "describing the installed model plugins"),  # and the embedded Redis
        ("recover", "re-attaching the jobs in progress"),  # and the follower's threads
    ],
)
def test_a_start_failing_at_any_step_stops_everything_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str, step: str
) -> None:
    def fail(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("boom")

    monkeypatch.setattr(f"florist_grpc.server.{function}", fail)
    before = _live_children()
    settings = Settings(port=free_service_port(), metrics_port=free_service_port(), data_dir=tmp_path / "florist")
    with pytest.raises(StartFailed) as raised:
        asyncio.run(ControlPlane(settings).start())
    assert str(raised.value) == f"{step}: boom"
    wait_for(lambda: not (_live_children() - before), 15, "the Redis and launcher pool it started to end")
    assert listen_problem("127.0.0.1", settings.port) is None
    assert listen_problem("127.0.0.1", settings.metrics_port) is None
    _assert_released(settings.data_dir)
