"""WatchJobs: every change to the jobs a caller sees, each with its store-wide revision, live and replayed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.helpers import job_message, short_timeouts

BOOKMARK = pb.JOB_CHANGE_TYPE_BOOKMARK


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    running = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(watch_bookmark_seconds=0.3))
    yield running
    running.stop()


class Watcher:
    """A WatchJobs stream read by a thread into a queue, so a test waits for changes with a bound."""

    def __init__(self, plane: ControlPlaneThread, request: pb.WatchJobsRequest) -> None:
        self.call = plane.jobs.WatchJobs(request, timeout=60)
        self.changes: queue.Queue[pb.JobChange | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.changes.put(response.change)
        except grpc.RpcError as exc:
            self.changes.put(exc)

    def next(self, skip_bookmarks: bool = True) -> pb.JobChange:
        while True:
            item = self.changes.get(timeout=20)
            if isinstance(item, grpc.RpcError):
                raise item
            if not (skip_bookmarks and item.type == BOOKMARK):
                return item

    def close(self) -> None:
        self.call.cancel()


def test_a_watch_from_now_opens_with_a_bookmark_then_follows_every_change(plane: ControlPlaneThread) -> None:
    plane.create(job_message(["/d/a.pt"]))
    current = plane.plane.store.current_revision()
    watcher = Watcher(plane, pb.WatchJobsRequest())
    try:
        opening = watcher.next(skip_bookmarks=False)
        assert (opening.type, opening.revision, opening.HasField("job")) == (BOOKMARK, current, False)
        job = plane.create(job_message(["/d/b.pt"]))
        added = watcher.next()
        assert (added.type, added.revision, added.job.id) == (pb.JOB_CHANGE_TYPE_ADDED, current + 1, job.id)
        assert added.job.revision == current + 1
        store = plane.plane.store
        store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
        modified = watcher.next()
        assert (modified.type, modified.job.state) == (pb.JOB_CHANGE_TYPE_MODIFIED, job_pb2.JOB_STATE_IN_PROGRESS)
        store.transition(job.id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
        plane.jobs.DeleteJob(pb.DeleteJobRequest(job_id=job.id), timeout=10)
        assert [c.type for c in (watcher.next(), watcher.next())] == [
            pb.JOB_CHANGE_TYPE_MODIFIED,
            pb.JOB_CHANGE_TYPE_DELETED,
        ]
        # Silence: a bookmark at the last revision, safe to resume from.
        bookmark = watcher.next(skip_bookmarks=False)
        assert (bookmark.type, bookmark.revision) == (BOOKMARK, current + 4)
    finally:
        watcher.close()


def test_a_watch_replays_from_a_revision_and_the_job_tells_its_current_round(plane: ControlPlaneThread) -> None:
    """Rounds the FL server finishes are job-level changes; other reports are not."""
    simulated = create_running(plane.plane, n_clients=2)
    start = plane.plane.store.current_revision()
    play_rounds(simulated, 2)
    finish(plane.plane, simulated)
    watcher = Watcher(plane, pb.WatchJobsRequest(after_revision=start))
    try:
        assert watcher.next(skip_bookmarks=False).revision == start  # opens at the position asked for
        jobs = [watcher.next().job]
        while jobs[-1].state == job_pb2.JOB_STATE_IN_PROGRESS:
            jobs.append(watcher.next().job)
        # Reports read together (the read throttle) may move the round by more than one in one change.
        rounds = [j.current_round for j in jobs]
        assert rounds == sorted(rounds) and rounds[0] >= 1 and rounds[-1] == 2
        assert jobs[-1].state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        assert not jobs[0].server_metrics.fields  # BASIC by default
        assert plane.get(simulated.job_id).current_round == 2
    finally:
        watcher.close()


def test_the_full_view_carries_the_reports(plane: ControlPlaneThread) -> None:
    simulated = create_running(plane.plane, n_clients=1)
    start = plane.plane.store.current_revision()
    play_rounds(simulated, 1)
    watcher = Watcher(plane, pb.WatchJobsRequest(after_revision=start, view=pb.JOB_VIEW_FULL))
    try:
        change = watcher.next()
        assert change.job.current_round == 1 and "rounds" in change.job.server_metrics.fields
    finally:
        watcher.close()
        finish(plane.plane, simulated)


def test_a_state_filter_sends_a_job_entering_as_added_and_leaving_as_deleted(plane: ControlPlaneThread) -> None:
    job = plane.create(job_message(["/d/a.pt"]))
    watcher = Watcher(plane, pb.WatchJobsRequest(filter="state = IN_PROGRESS"))
    try:
        watcher.next(skip_bookmarks=False)
        store = plane.plane.store
        store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
        store.transition(job.id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
        entered, left = watcher.next(), watcher.next()
        assert (entered.type, entered.job.state) == (pb.JOB_CHANGE_TYPE_ADDED, job_pb2.JOB_STATE_IN_PROGRESS)
        assert (left.type, left.job.state) == (pb.JOB_CHANGE_TYPE_DELETED, job_pb2.JOB_STATE_CANCELLED)
    finally:
        watcher.close()


def test_a_revision_beyond_the_current_one_or_no_longer_kept_is_out_of_range(tmp_path: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", store=SqliteStore(tmp_path / "s.sqlite3", keep_changes=5))
    try:
        for _ in range(101):  # trimmed at revision 100: changes up to 95 are gone
            plane.create(job_message(["/d/a.pt"]))
        for after in (102, 3):
            with pytest.raises(grpc.RpcError) as raised:
                next(iter(plane.jobs.WatchJobs(pb.WatchJobsRequest(after_revision=after), timeout=10)))
            assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "list the jobs again" in raised.value.details()
        kept = Watcher(plane, pb.WatchJobsRequest(after_revision=95))
        assert kept.next().revision == 96
        kept.close()
    finally:
        plane.stop()


def test_list_pages_carry_the_revision_they_were_read_at(plane: ControlPlaneThread) -> None:
    for _ in range(3):
        plane.create(job_message(["/d/a.pt"]))
    page = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=2), timeout=10)
    assert page.revision == 3 and {j.revision for j in page.jobs} == {3, 2}
