"""The TypeScript client's `watch` example (clients/typescript/src/watch.ts): list, then watch from the listing's
revision; each change printed once, also across a restart of the control plane."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from florist_grpc.domain.model import JobState
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, short_timeouts

ROOT = Path(__file__).resolve().parents[2]
WATCH = ROOT / "clients" / "typescript" / "dist" / "watch.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the TypeScript client cannot run")


def test_the_watch_example_lists_then_prints_each_change_once_across_a_restart(tmp_path: Path) -> None:
    assert NODE is not None
    if not WATCH.exists():
        pytest.fail(f"{WATCH} is not built: run `make lint` (npm ci && npm run build in clients/typescript)")
    timeouts = short_timeouts(watch_bookmark_seconds=0.3)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts)
    port = plane.plane.port
    listed = plane.create(job_message(["/d/a.pt"]))
    process = subprocess.Popen(
        [NODE, str(WATCH), "--address", plane.address, "--max-changes", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert lines.get(timeout=30) == f"listed {listed.id} JOB_STATE_NOT_STARTED round 0 revision 1"
        assert lines.get(timeout=30) == "listed at revision 1"
        store = plane.plane.store
        store.transition(listed.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
        store.transition(listed.id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
        assert lines.get(timeout=30) == f"MODIFIED {listed.id} JOB_STATE_IN_PROGRESS round 0 revision 2"
        assert lines.get(timeout=30) == f"MODIFIED {listed.id} JOB_STATE_CANCELLED round 0 revision 3"
        plane.stop()  # the watch is cut; it resumes after revision 3 once the control plane is back
        plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts, port=port)
        job = plane.create(job_message(["/d/b.pt"]))
        assert lines.get(timeout=60) == f"ADDED {job.id} JOB_STATE_NOT_STARTED round 0 revision 4"
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        plane.stop()
