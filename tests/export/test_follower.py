"""The tracker follower against a real job store and a tracker that records what it is sent: each (metric, round)
once, what a resumed run already holds not sent again, an unreachable tracker retried until it answers, a refused
batch left out without stopping the rest."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState, Source, SourceKind
from florist_grpc.export import backlog
from florist_grpc.export.cursor import Cursor, Cursors, JsonState
from florist_grpc.export.follower import TrackerFollower
from florist_grpc.export.points import Point
from florist_grpc.export.tracker import JobEnd, Logged, Opened, Tracker, TrackerRefused, TrackerUnavailable
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing.plane import wait_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Recording(Tracker):
    name = "recording"
    target = "memory"
    title = "the recording tracker"
    batch_size = 2

    def __init__(self, held: Logged | None = None, failures: list[Exception] | None = None) -> None:
        self.held = held
        self.failures = failures or []  # raised by the next calls, in order
        self.points: list[tuple[str, int]] = []
        self.ends: list[JobState] = []

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def open(self, job: Job, state: JsonState) -> Opened:
        self._maybe_fail()
        return Opened({"run": job.id}, self.held)

    def log(self, job_id: str, points: list[Point]) -> JsonState:
        self._maybe_fail()
        self.points += [(p.name, p.step) for p in points]
        return {"run": job_id}

    def finish(self, job_id: str, end: JobEnd) -> JsonState:
        self._maybe_fail()
        self.ends.append(end.state)
        return {"run": job_id}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    yield opened
    opened.close()


def a_job(store: SqliteStore, rounds: int) -> str:
    """A finished job whose server reported `rounds` rounds (loss 1/n) and whose one client reported its loss."""
    job = Job("job1", "MLP", "FEDAVG", "SGD", "FEDAVG", {}, [Client("/d")], NOW)
    store.create_job(job)
    store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, NOW)
    client = Source(SourceKind.CLIENT, 0, "c0")
    server: dict[str, object] = {}
    for n in range(1, rounds + 1):
        report = {"rounds": {**server.get("rounds", {}), str(n): {"val - loss - aggregated": 1 / n}}}  # type: ignore[dict-item]
        store.append_report_changes([ReportChange(job.id, SERVER_SOURCE, server, report, NOW)])
        server = report
    store.append_report_changes([ReportChange(job.id, client, {}, {"rounds": {"1": {"eval_round_loss": 0.5}}}, NOW)])
    store.transition(job.id, {JobState.IN_PROGRESS}, JobState.FINISHED_SUCCESSFULLY, NOW)
    return job.id


@contextlib.contextmanager
def no_model(job: Job) -> Iterator[None]:
    yield None


def follow(tracker: Tracker, store: SqliteStore, jobs_dir: Path, job_id: str) -> Cursor:
    follower = TrackerFollower(tracker, store, Cursors(jobs_dir, tracker.name), no_model)  # type: ignore[arg-type]
    follower.start()
    follower.notify([job_id])
    try:
        return wait_for(lambda: (c := follower.cursors.load(job_id)) and c.done and c, 30, "the run complete")
    finally:
        follower.stop(5)


def test_every_metric_and_round_is_sent_once_and_the_run_finished(store: SqliteStore, tmp_path: Path) -> None:
    job_id = a_job(store, rounds=3)
    tracker = Recording()
    cursor = follow(tracker, store, tmp_path, job_id)
    assert sorted(tracker.points) == [("client0/val - loss", 1), *[("val - loss - aggregated", n) for n in (1, 2, 3)]]
    assert tracker.ends == [JobState.FINISHED_SUCCESSFULLY]
    assert cursor.sequence == store.get_job(job_id).last_sequence  # type: ignore[union-attr]


def test_a_resumed_run_is_not_sent_what_it_already_holds(store: SqliteStore, tmp_path: Path) -> None:
    job_id = a_job(store, rounds=3)
    # The cursor stayed at the job's first event, but the run holds rounds 1 and 2 (a crash before the cursor moved).
    Cursors(tmp_path, "recording").save(job_id, Cursor("memory", 1, False, {"run": job_id}))
    tracker = Recording(held={("val - loss - aggregated", 1), ("val - loss - aggregated", 2)})
    follow(tracker, store, tmp_path, job_id)
    assert sorted(tracker.points) == [("client0/val - loss", 1), ("val - loss - aggregated", 3)]


def test_an_unreachable_tracker_is_retried_until_it_answers(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_FIRST_SECONDS", 0.01)
    monkeypatch.setattr(backlog, "BACKOFF_MAX_SECONDS", 0.05)
    job_id = a_job(store, rounds=3)
    tracker = Recording(failures=[TrackerUnavailable("down")] * 4)
    follow(tracker, store, tmp_path, job_id)
    assert sorted(tracker.points) == [("client0/val - loss", 1), *[("val - loss - aggregated", n) for n in (1, 2, 3)]]


def test_a_refused_batch_is_left_out_and_the_rest_goes_on(
    store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = a_job(store, rounds=3)
    # open succeeds; the first batch of points (two: the batch size) is refused.
    tracker = Recording(failures=[])
    original = tracker.log
    refused = [True]

    def log_once_refused(job: str, points: list[Point]) -> JsonState:
        if refused.pop() if refused else False:
            raise TrackerRefused("bad name")
        return original(job, points)

    tracker.log = log_once_refused  # type: ignore[method-assign]
    follow(tracker, store, tmp_path, job_id)
    assert len(tracker.points) == 2  # four points, two refused
    assert tracker.ends == [JobState.FINISHED_SUCCESSFULLY]
    assert any("refused 2 point(s)" in r.getMessage() for r in caplog.records)
