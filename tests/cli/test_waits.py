"""What scripts (the README's walk-throughs among them) wait on: `health --wait`, `agents --wait`, `job list -q`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from florist_grpc.net import free_service_port
from florist_grpc.testing.plane import ControlPlaneThread
from tests.cli.conftest import Invoke
from tests.cli.test_job_commands import JOB_YAML


def florist(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "florist_grpc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_health_wait_waits_for_a_server_that_is_still_starting(tmp_path: Path) -> None:
    port = free_service_port()
    waiting = florist("health", "--wait", "60", "--address", f"127.0.0.1:{port}")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", port=port)  # starts once the command is already waiting
    try:
        out, err = waiting.communicate(timeout=90)
    finally:
        plane.stop()
    assert waiting.returncode == 0, err
    assert out.strip() == "SERVING"


def test_health_wait_gives_up_after_its_bound_naming_it(cli: Invoke) -> None:
    address = f"127.0.0.1:{free_service_port()}"
    began = time.monotonic()
    result = cli("health", "--wait", "1.5", "--address", address)
    assert time.monotonic() - began >= 1.5, "it waited, rather than failing at the first refused connection"
    assert result.exit_code == 1
    assert f"error: {address} is not SERVING within 1.5 s (no answer)" in result.stderr


def test_agents_wait_names_the_agents_that_did_not_connect_in_time(cli: Invoke, plane: ControlPlaneThread) -> None:
    result = cli("agents", "--wait", "site-b", "--wait", "site-a", "--timeout", "0.5", "--address", plane.address)
    assert result.exit_code == 1
    assert "error: not connected within 0.5 s: site-a, site-b" in result.stderr


def test_job_list_quiet_prints_only_ids_newest_first(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB_YAML)
    ids = []
    for _ in range(2):
        created = cli("job", "create", "-f", tmp_path / "job.yaml", "--address", plane.address)
        assert created.exit_code == 0, created.stderr
        ids.append(created.stdout.strip())
    listed = cli("job", "list", "-q", "--address", plane.address)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines() == ids[::-1]
    newest = cli("job", "list", "-q", "--page-size", "1", "--address", plane.address, "-o", "json")
    assert newest.stdout.splitlines() == [ids[1]]
