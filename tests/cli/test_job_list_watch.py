"""`job list --watch`: the list, then each change as it comes (like `kubectl get -w`), resumed across a restart."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.cli.job_watch import watch_filter
from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, short_timeouts

BIN = Path(sys.executable).parent / "florist-grpc"


class Lines:
    """A command's stdout lines, read by a thread (a test never blocks on the pipe)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([str(BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, needle: str, timeout: float = 30) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if needle in line:
                return line

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(30)


def test_watch_lists_then_prints_each_change_and_ends_on_ctrl_c(tmp_path: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist")
    try:
        listed = plane.create(job_message(["/d/a.pt"]))
        watch = Lines("job", "list", "--watch", "--address", plane.address)
        assert "PROJECT" in watch.until("ID")
        assert "NOT_STARTED" in watch.until(listed.id)
        job = plane.create(job_message(["/d/b.pt"]))
        added = watch.until(job.id)
        assert added.startswith("ADDED") and "NOT_STARTED" in added and "default  local  round 0" in added
        plane.plane.store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
        assert watch.until("MODIFIED").split()[1:3] == [job.id, "IN_PROGRESS"]
        assert watch.interrupt() == 130
    finally:
        plane.stop()


def test_watch_as_ndjson_resumes_after_the_control_plane_restarts(tmp_path: Path) -> None:
    timeouts = short_timeouts(watch_bookmark_seconds=0.3)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts)
    port = plane.plane.port
    listed = plane.create(job_message(["/d/a.pt"]))
    watch = Lines("job", "list", "--watch", "--address", plane.address, "-o", "json")
    try:
        page = json.loads(watch.until('"jobs"'))  # the listing: one page, read at revision 1
        assert (page["revision"], [j["id"] for j in page["jobs"]]) == ("1", [listed.id])
        first = plane.create(job_message(["/d/b.pt"]))
        assert json.loads(watch.until(first.id))["change"]["type"] == "JOB_CHANGE_TYPE_ADDED"
        plane.stop()
        plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts, port=port)
        second = plane.create(job_message(["/d/c.pt"]))
        change = json.loads(watch.until(second.id, timeout=60))["change"]
        assert (change["type"], change["revision"]) == ("JOB_CHANGE_TYPE_ADDED", "3")
        assert json.loads(watch.until("BOOKMARK"))["change"]["revision"] == "3"
    finally:
        watch.interrupt()
        plane.stop()


def test_state_and_filter_make_one_watch_filter() -> None:
    assert watch_filter(job_pb2.JOB_STATE_UNSPECIFIED, "") == ""
    assert watch_filter(job_pb2.JOB_STATE_IN_PROGRESS, "model = MLP OR model = CNN") == (
        "state = JOB_STATE_IN_PROGRESS AND model = MLP OR model = CNN"
    )
