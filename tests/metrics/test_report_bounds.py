"""A site's reports are bounded: one report's size and one job's stored history (config.Limits).

A report over its bound is never read whole, is set aside with one notice in the job's events, and the source's last
stored report stands; a job whose history reached its bound fails naming it. Real Redis, real SQLite; the last
tests run the in-process control plane.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from google.protobuf import json_format

from florist_grpc.config import Limits
from florist_grpc.domain.model import SERVER_SOURCE, JobState, MetricsEvent, Source, SourceKind
from florist_grpc.metrics.ingest import ReportIngest
from florist_grpc.metrics.report_reader import ReportReader
from florist_grpc.metrics.report_text import MAX_REPORT_DEPTH
from florist_grpc.metrics.throttle import ReadThrottle
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import TERMINAL, wait_for
from tests.store.test_store_contract import T0, new_job

KiB = 1024
CLIENT = Source(SourceKind.CLIENT, 0, "c0")


@dataclass
class Bounded:
    reader: ReportReader
    store: SqliteStore
    redis: redis.Redis
    refused: list[str] = field(default_factory=list)

    def report(self, uuid: str, report: dict[str, object]) -> None:
        self.redis.set(uuid, json.dumps(report))

    def events(self, kind: SourceKind | None = None) -> list[MetricsEvent]:
        return [e for e in self.store.read_events("a", 0) if kind is None or e.source.kind is kind]

    def notices(self) -> list[str]:
        return [e.patch["notice"] for e in self.events(SourceKind.JOB) if "notice" in e.patch]

    def calls(self, *commands: str) -> int:
        """How many of these commands Redis has answered."""
        stats = self.redis.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)

    def reads_of_reports(self) -> int:
        """How many reads of a report's text Redis has answered (GETRANGE, MGET, GET)."""
        return self.calls("getrange", "mget", "get")

    def bytes_sent(self) -> int:
        """What Redis has sent to its clients so far, in bytes."""
        return int(self.redis.info("stats")["total_net_output_bytes"])


@contextlib.contextmanager
def bounded_reading(tmp_path: Path, redis_url: str, limits: Limits) -> Iterator[Bounded]:
    store = SqliteStore(tmp_path / "jobs.sqlite")
    store.create_job(new_job("a", clients=1))
    store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    ingest = ReportIngest(redis_url, store, lambda events: None, limits)
    reader = ReportReader(ingest, ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.0))
    bounded = Bounded(reader, store, redis.Redis.from_url(redis_url))
    scheduled: list[Callable[[], None]] = []
    reader.start(scheduled.append, refused=bounded.refused.append)
    reader.follow("a", SERVER_SOURCE, "s", {})
    reader.follow("a", CLIENT, "c0", {})
    yield bounded
    reader.close()
    bounded.redis.close()
    store.close()


@pytest.fixture
def bounded(tmp_path: Path, redis_url: str) -> Iterator[Bounded]:
    with bounded_reading(tmp_path, redis_url, Limits(report_max_bytes=4 * KiB, job_history_max_bytes=20 * KiB)) as b:
        yield b


def test_a_report_over_the_bound_is_set_aside_unread_with_one_notice_and_the_last_one_stands(bounded: Bounded) -> None:
    bounded.report("s", {"fit_start": "t0"})
    assert bounded.reader.read(["s"])
    bounded.report("s", {"fit_start": "t0", "blob": "x" * 5000})
    assert bounded.reader.read(["s"])
    assert bounded.reader.persisted("s") == {"fit_start": "t0"}
    assert [e.patch for e in bounded.events(SourceKind.SERVER)] == [{"fit_start": "t0"}]
    assert bounded.notices() == [
        "a report of the FL server was set aside: it is 4.9 KiB (5031 bytes), over the bound of one report "
        "(4 KiB, Limits.report_max_bytes); its last stored report stands"
    ]
    bounded.report("s", {"fit_start": "t0", "blob": "y" * 6000})
    reads = bounded.reads_of_reports()
    assert bounded.reader.read(["s"])
    assert bounded.reads_of_reports() == reads  # set aside last time: its size was asked first, and was enough
    assert len(bounded.notices()) == 1  # one notice while its reports keep being set aside, not one per report
    bounded.report("s", {"fit_start": "t0", "fit_end": "t1"})  # fits again: stored, from the last stored baseline
    assert bounded.reader.read(["s"])
    assert [e.patch for e in bounded.events(SourceKind.SERVER)][-1] == {"fit_end": "t1"}
    bounded.report("s", {"blob": "z" * 5000})
    assert bounded.reader.read(["s"])
    assert len(bounded.notices()) == 2  # set aside again after one was stored: told again


def test_a_report_over_the_bound_is_never_read_whole(bounded: Bounded) -> None:
    bounded.report("s", {"blob": "x" * (200 * KiB)})
    sent = bounded.bytes_sent()
    assert bounded.reader.read(["s"])
    assert bounded.bytes_sent() - sent < 16 * KiB  # at most the bound's worth (4 KiB) of its 200 KiB, and a length
    assert bounded.reader.persisted("s") == {}
    assert bounded.notices() == [
        "a report of the FL server was set aside: it is 200 KiB (204812 bytes), over the bound of one report "
        "(4 KiB, Limits.report_max_bytes); its last stored report stands"
    ]


def test_a_report_within_the_bound_is_read_in_one_round_trip(bounded: Bounded) -> None:
    bounded.report("s", {"fit_start": "t0"})
    bounded.report("c0", {"fit_start": "t1"})
    before = bounded.calls("getrange", "strlen", "mget", "get")
    assert bounded.reader.read(["s", "c0"])
    assert bounded.calls("getrange", "strlen", "mget", "get") - before == 2  # one bounded read each, one write
    assert bounded.reader.persisted("s") == {"fit_start": "t0"}
    assert bounded.reader.persisted("c0") == {"fit_start": "t1"}


def test_an_unusable_report_is_set_aside_with_a_notice_too(bounded: Bounded) -> None:
    deep: dict[str, object] = {}
    for _ in range(MAX_REPORT_DEPTH + 1):
        deep = {"d": deep}
    bounded.report("c0", deep)
    bounded.redis.set("s", "not json")
    assert bounded.reader.read(["s", "c0"])
    assert sorted(bounded.notices()) == [
        "a report of the FL client 0 (c0) was set aside: it is nested deeper than 24 levels; its last stored report "
        "stands",
        "a report of the FL server was set aside: it is not JSON; its last stored report stands",
    ]


def test_a_job_whose_history_reached_its_bound_has_its_changes_refused_and_is_handed_over_once(
    bounded: Bounded,
) -> None:
    round_number = 0
    while not bounded.refused and round_number < 100:
        round_number += 1
        bounded.report("s", {"round": round_number, "blob": str(round_number % 10) * 3000})  # a 3 KB change
        assert bounded.reader.read(["s"])
    assert bounded.refused == ["a"], "refused once its history is full"
    stored = sum(len(json.dumps(e.patch)) for e in bounded.events())
    assert 20 * KiB <= stored <= 20 * KiB + 4 * KiB  # the bound, plus the one change that crossed it
    message = bounded.reader.refusal("a")
    assert "Limits.job_history_max_bytes" in message and "20 KiB" in message
    count = len(bounded.events())
    bounded.report("c0", {"host_type": "client"})
    assert bounded.reader.read(["s", "c0"])
    assert len(bounded.events()) == count  # nothing more is stored for this job
    assert bounded.refused == ["a"]
    bounded.reader.forget(["s", "c0"])
    assert bounded.reader.refusal("a") == ""


def test_after_a_restart_the_history_already_stored_counts(tmp_path: Path, redis_url: str) -> None:
    limits = Limits(report_max_bytes=8 * KiB, job_history_max_bytes=10 * KiB)
    with bounded_reading(tmp_path, redis_url, limits) as first:
        first.report("s", {"blob": "a" * 6000})
        assert first.reader.read(["s"])
        assert not first.refused
        # A new reader on the same store follows the job again with its persisted report, as recovery does.
        refused: list[str] = []
        reader = ReportReader(
            ReportIngest(redis_url, first.store, lambda events: None, limits),
            ReadThrottle(subscribers=lambda job_id: 0, min_interval=0.0),
        )
        reader.start(lambda item: None, refused=refused.append)
        reader.follow("a", SERVER_SOURCE, "s", {"blob": "a" * 6000})
        first.report("s", {"blob": "b" * 6000})
        assert reader.read(["s"])  # stored: 6 + 6 KiB, past 10 KiB only because the 6 before the restart count
        first.report("s", {"blob": "c"})
        assert reader.read(["s"])
        assert refused == ["a"]  # so this change is refused
        reader.close()


# --- the control plane ------------------------------------------------------------------------------------------


@pytest.fixture
def small_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    running = ControlPlaneThread.in_dir(
        tmp_path / "florist", limits=Limits(report_max_bytes=64 * KiB, job_history_max_bytes=1024 * KiB)
    )
    yield running
    running.stop()


def test_a_user_sees_a_set_aside_report_in_the_jobs_stream_and_the_job_goes_on(small_plane: ControlPlaneThread) -> None:
    job = simulation.create_running(small_plane.plane, n_clients=1)
    job.clients[0].report_values(host_type="client", blob="x" * 100 * KiB)
    job.server.report_values(host_type="server", fit_start="t0")
    wait_for(lambda: "fit_start" in small_plane.get(job.job_id).server_metrics, 10, "the server's report")
    job.server.report_values(fit_end="t1")
    simulation.finish(small_plane.plane, job)
    events = small_plane.events(job.job_id)
    notices = [
        json_format.MessageToDict(e.patch)["notice"]
        for e in events
        if e.source.kind == pb.SOURCE_KIND_JOB and "notice" in e.patch.fields
    ]
    assert len(notices) == 1 and notices[0].startswith("a report of the FL client 0 (")
    assert "over the bound of one report (64 KiB, Limits.report_max_bytes)" in notices[0]
    done = small_plane.get(job.job_id)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    assert "blob" not in done.clients[0].metrics


def test_a_site_writing_megabytes_fails_its_job_at_the_history_bound_and_the_store_stays_bounded(
    small_plane: ControlPlaneThread,
) -> None:
    # The audit's case, scaled down: 300 distinct reports just under the report bound (it was 300 of 1 MB).
    job = simulation.create_running(small_plane.plane, n_clients=1)
    for n in range(300):
        job.server.report = {"host_type": "server", "round": n, "blob": f"{n:06d}" * (60 * KiB // 6)}
        job.server.report_values()
        if small_plane.get(job.job_id).state in TERMINAL:
            break
    ended = small_plane.wait_state(job.job_id, TERMINAL, 30)
    assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert "Limits.job_history_max_bytes" in ended.error_message and "1 MiB" in ended.error_message
    stored = sum(len(json.dumps(json_format.MessageToDict(e.patch))) for e in small_plane.events(job.job_id))
    assert stored <= 1024 * KiB + 2 * 64 * KiB  # the bound, the change that crossed it, and the terminal event
