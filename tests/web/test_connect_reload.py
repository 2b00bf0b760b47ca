"""A browser's open streams follow an auth-file reload as a gRPC client's do: a removed token's watch ends
UNAUTHENTICATED, a changed line's ends UNAVAILABLE (to call again under what it says now), others go on."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_service_connect
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread
from tests.web.conftest import TOKENS, Dashboard, headers, sha, write_auth_file


class BrowserWatch:
    """A WatchJobs stream over Connect, read by a thread; `ended` gets the error it ends with."""

    def __init__(self, dashboard: Dashboard, role: str) -> None:
        client = job_service_connect.JobServiceClientSync(dashboard.url)
        self._responses = client.watch_jobs(job_pb.WatchJobsRequest(), headers=headers(role), timeout_ms=60_000)
        assert next(self._responses).change.type == job_pb.JOB_CHANGE_TYPE_BOOKMARK  # open
        self.ended: queue.Queue[ConnectError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for _ in self._responses:
                pass
        except ConnectError as exc:
            self.ended.put(exc)


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[tuple[Dashboard, Path]]:
    auth_file = write_auth_file(tmp_path / "tokens")
    timeouts = replace(TEST_TIMEOUTS, file_reload_seconds=0.1)
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", auth_file=auth_file, http_port=free_service_port(), launcher_pool=False, timeouts=timeouts
    )
    yield Dashboard(plane), auth_file
    plane.stop()


@pytest.mark.timeout(60)
def test_a_browsers_watch_ends_when_its_token_is_removed_or_its_line_changes(
    reloading: tuple[Dashboard, Path],
) -> None:
    dashboard, auth_file = reloading
    removed, changed = BrowserWatch(dashboard, "viewer"), BrowserWatch(dashboard, "alpha-viewer")
    kept = BrowserWatch(dashboard, "admin")
    auth_file.write_text(f"admin {sha(TOKENS['admin'])} ops\nviewer {sha(TOKENS['alpha-viewer'])} alice beta\n")
    gone = removed.ended.get(timeout=10)
    assert (gone.code, "removed from the auth file" in gone.message) == (Code.UNAUTHENTICATED, True), gone
    narrowed = changed.ended.get(timeout=10)
    assert (narrowed.code, "line of alice changed" in narrowed.message) == (Code.UNAVAILABLE, True), narrowed
    assert kept.ended.empty()  # another token's stream goes on
