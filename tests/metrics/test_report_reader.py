"""The report reader on its own: notifications coalesce into one read on its owning thread, a failed read is
retried, the throttle defers, and only persisted reports become baselines (real Redis, real SQLite)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from florist_grpc.domain.model import SERVER_SOURCE, JobState, MetricsEvent, Source, SourceKind
from florist_grpc.metrics import report_reader
from florist_grpc.metrics.ingest import ReportIngest
from florist_grpc.metrics.report_reader import ReportReader
from florist_grpc.metrics.report_text import MAX_REPORT_DEPTH
from florist_grpc.metrics.throttle import ReadThrottle
from florist_grpc.store.sqlite import SqliteStore
from tests.store.test_store_contract import T0, new_job

RETRY = 0.5


@dataclass
class Reading:
    """A reader whose owning thread is the test: scheduled reads wait in `scheduled` until `run_scheduled`."""

    reader: ReportReader
    store: SqliteStore
    redis: redis.Redis
    published: list[list[MetricsEvent]]
    scheduled: list[Callable[[], None]] = field(default_factory=list)

    def report(self, uuid: str, report: dict[str, object]) -> None:
        self.redis.set(uuid, json.dumps(report))

    def run_scheduled(self) -> int:
        items, self.scheduled[:] = list(self.scheduled), []
        for item in items:
            item()
        return len(items)

    def events(self, job_id: str = "a") -> list[MetricsEvent]:
        return [e for e in self.store.read_events(job_id, 0) if e.source.kind is not SourceKind.JOB]


@contextlib.contextmanager
def reading_with(tmp_path: Path, redis_url: str, min_interval: float) -> Iterator[Reading]:
    store = SqliteStore(tmp_path / "jobs.sqlite")
    store.create_job(new_job("a", clients=2))
    store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    published: list[list[MetricsEvent]] = []
    ingest = ReportIngest(redis_url, store, published.append)
    reader = ReportReader(ingest, ReadThrottle(subscribers=lambda job_id: 0, min_interval=min_interval), RETRY)
    client = redis.Redis.from_url(redis_url)
    reading = Reading(reader, store, client, published)
    reader.start(reading.scheduled.append)
    reader.follow("a", SERVER_SOURCE, "s", {})
    reader.follow("a", Source(SourceKind.CLIENT, 0, "c0"), "c0", {})
    reader.follow("a", Source(SourceKind.CLIENT, 1, "c1"), "c1", {})
    yield reading
    reader.close()
    client.close()
    store.close()


@pytest.fixture
def reading(tmp_path: Path, redis_url: str) -> Iterator[Reading]:
    with reading_with(tmp_path, redis_url, min_interval=0.0) as reading:
        yield reading


def test_a_burst_of_notifications_from_other_threads_is_one_read_of_every_source(reading: Reading) -> None:
    for uuid in ("s", "c0", "c1"):
        reading.report(uuid, {"host_type": uuid})
    notifiers = [threading.Thread(target=reading.reader.notify, args=(uuid,)) for uuid in ("s", "c0", "c1", "s")]
    for notifier in notifiers:
        notifier.start()
    for notifier in notifiers:
        notifier.join(10)
    assert reading.run_scheduled() == 1
    assert len(reading.published) == 1  # one store transaction, one hand-over to the hub
    assert sorted(e.source.key for e in reading.published[0]) == ["client0", "client1", "server"]
    assert reading.reader.persisted("c1") == {"host_type": "c1"}
    assert reading.run_scheduled() == 0


def test_a_notification_of_a_source_no_longer_followed_reads_nothing(reading: Reading) -> None:
    reading.report("c0", {"late": True})
    reading.reader.forget(["c0"])
    reading.reader.notify("c0")
    assert reading.run_scheduled() == 1
    assert reading.events() == [] and reading.published == []
    assert reading.reader.persisted("c0") == {}


def test_a_report_read_again_unchanged_appends_nothing(reading: Reading) -> None:
    reading.report("s", {"fit_start": "t0"})
    assert reading.reader.read(["s"])
    assert reading.reader.read(["s"])
    assert [e.patch for e in reading.events()] == [{"fit_start": "t0"}]


def test_a_failed_read_keeps_the_baseline_and_is_read_again_after_the_retry_interval(reading: Reading) -> None:
    reading.report("s", {"fit_start": "t0"})
    reading.redis.execute_command("ACL", "SETUSER", "default", "-getrange")  # Redis refuses the reader's read
    before = time.monotonic()
    assert not reading.reader.read(["s"])
    assert reading.reader.persisted("s") == {} and reading.events() == []
    due = reading.reader.next_due()
    assert due is not None and before + RETRY <= due <= time.monotonic() + RETRY
    reading.reader.release_due(due - 0.01)
    assert reading.run_scheduled() == 0  # not yet
    reading.redis.execute_command("ACL", "SETUSER", "default", "+getrange")
    reading.reader.release_due(due)
    assert reading.run_scheduled() == 1
    assert reading.reader.persisted("s") == {"fit_start": "t0"}
    assert [e.patch for e in reading.events()] == [{"fit_start": "t0"}]
    assert reading.reader.next_due() is None  # read: no retry left


def test_a_forgotten_source_is_not_retried(reading: Reading) -> None:
    reading.redis.execute_command("ACL", "SETUSER", "default", "-getrange")  # Redis refuses the reader's read
    assert not reading.reader.read(["s", "c0"])
    reading.reader.forget(["s", "c0"])
    assert reading.reader.next_due() is None
    reading.redis.execute_command("ACL", "SETUSER", "default", "+getrange")


def test_a_source_read_too_recently_is_deferred_not_dropped(tmp_path: Path, redis_url: str) -> None:
    with reading_with(tmp_path, redis_url, min_interval=60.0) as reading:
        reading.report("s", {"round": 1})
        reading.reader.notify("s")
        reading.run_scheduled()
        reading.report("s", {"round": 2})
        reading.reader.notify("s")
        reading.run_scheduled()
        assert reading.reader.persisted("s") == {"round": 1}  # the second notification came too early
        due = reading.reader.next_due()
        assert due is not None and due > time.monotonic() + 30
        # Read directly (as on a process's exit), the throttle does not apply.
        assert reading.reader.read(["s"])
        assert [e.patch for e in reading.events()] == [{"round": 1}, {"round": 2}]


def test_a_notification_of_a_deferred_source_wakes_nothing_and_its_deferred_read_sees_the_report(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]  # the reader's clock: a loaded machine cannot let the interval pass between two calls
    monkeypatch.setattr(report_reader, "time", SimpleNamespace(monotonic=lambda: now[0]))
    with reading_with(tmp_path, redis_url, min_interval=60.0) as reading:
        reading.report("s", {"round": 1})
        reading.reader.notify("s")
        reading.run_scheduled()
        reading.reader.notify("s")
        assert reading.run_scheduled() == 1  # read too early: deferred
        due = reading.reader.next_due()
        assert due == 1060.0
        for round_number in (2, 3):
            reading.report("s", {"round": round_number})
            reading.reader.notify("s")
            assert reading.scheduled == []  # the owning thread is not woken for it
        now[0] = due
        reading.reader.release_due(now[0])
        assert reading.run_scheduled() == 1
        assert reading.reader.persisted("s") == {"round": 3}  # the last report, read when the deferral ended


def test_only_a_persisted_report_becomes_the_baseline(reading: Reading) -> None:
    reading.report("s", {"fit_start": "t0"})
    assert reading.reader.read(["s"])
    deep: dict[str, object] = {}
    for _ in range(MAX_REPORT_DEPTH + 1):
        deep = {"d": deep}
    reading.report("s", deep)  # unusable: logged and set aside
    assert reading.reader.read(["s", "c0"])  # c0 never reported
    assert reading.reader.persisted("s") == {"fit_start": "t0"}
    assert reading.reader.persisted("c0") == {}
