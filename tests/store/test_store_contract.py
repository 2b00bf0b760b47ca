"""The JobStore contract. Every backend runs this one class (the pattern of Flower's linkstate_test.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.merge_patch import apply, diff
from florist_grpc.domain.model import (
    JOB_SOURCE,
    SERVER_SOURCE,
    Client,
    ClientState,
    Job,
    JobState,
    JsonObject,
    Launch,
    MetricsEvent,
    ProcessRef,
    Source,
    SourceKind,
)
from florist_grpc.store.base import JobStore, PageCursor, ReportChange, SetAside, UnconfirmedStop
from tests.store.contract_changes import ChangesContract, Reopen
from tests.store.contract_queue import QueueContract

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def append_change(
    store: JobStore, job_id: str, source: Source, previous: JsonObject, report: JsonObject, at: datetime
) -> MetricsEvent | None:
    """One report change appended on its own."""
    result = store.append_report_changes([ReportChange(job_id, source, previous, report, at)])[0]
    assert not isinstance(result, SetAside)
    return result


def report_of(store: JobStore, job_id: str, source: Source) -> JsonObject:
    """The accumulated report of one source, as the job reads back."""
    job = store.get_job(job_id)
    assert job is not None
    return job.server_metrics if source.kind is SourceKind.SERVER else job.clients[source.client_index].metrics


def new_job(job_id: str, at: datetime = T0, clients: int = 2) -> Job:
    return Job(
        id=job_id,
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config={"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1},
        clients=[Client(data_path=f"/d/{i}.pt") for i in range(clients)],
        create_time=at,
        server_address="127.0.0.1:9000",
    )


class JobStoreContract(ChangesContract, QueueContract):
    """Subclasses provide the `store` fixture (and those of the mixed-in parts of the contract)."""

    @pytest.fixture
    def store(self) -> Iterator[JobStore]:
        raise NotImplementedError

    def started(self, store: JobStore, job_id: str) -> None:
        store.create_job(new_job(job_id))
        assert store.transition(job_id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0) is not None

    # --- jobs ---

    def test_a_created_job_reads_back_equal(self, store: JobStore) -> None:
        job = new_job("a")
        store.create_job(job)
        got = store.get_job("a")
        assert got is not None
        assert got.model == "MLP" and got.server_config == job.server_config
        assert [c.data_path for c in got.clients] == ["/d/0.pt", "/d/1.pt"]
        assert got.state is JobState.NOT_STARTED and got.create_time == T0 and got.last_sequence == 0

    def test_an_unknown_job_is_none(self, store: JobStore) -> None:
        assert store.get_job("nope") is None

    def test_a_repeated_request_id_returns_the_first_job(self, store: JobStore) -> None:
        first = store.create_job(new_job("a"), request_id="req-1")
        second = store.create_job(new_job("b"), request_id="req-1")
        assert first.id == second.id == "a"
        assert store.get_job("b") is None

    def test_list_is_newest_first_pages_by_cursor_and_filters_by_state(self, store: JobStore) -> None:
        for i in range(5):
            store.create_job(new_job(f"j{i}", T0 + timedelta(seconds=i)))
        store.transition("j3", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        page = store.list_jobs(2, None, JobState.UNSPECIFIED)
        assert [j.id for j in page] == ["j4", "j3"]
        store.create_job(new_job("newer", T0 + timedelta(hours=1)))  # added between pages: no shift
        page2 = store.list_jobs(2, PageCursor(page[-1].create_time, page[-1].id), JobState.UNSPECIFIED)
        assert [j.id for j in page2] == ["j2", "j1"]
        assert [j.id for j in store.list_jobs(10, None, JobState.IN_PROGRESS)] == ["j3"]

    def test_list_filters_by_project_and_jobs_keep_project_and_owner(self, store: JobStore) -> None:
        for i, project in enumerate(["alpha", "beta", "alpha", "default"]):
            job = new_job(f"j{i}", T0 + timedelta(seconds=i))
            job.project, job.owner = project, f"owner{i}"
            store.create_job(job)
        alpha = store.list_jobs(10, None, JobState.UNSPECIFIED, {"alpha"})
        assert [(j.id, j.project, j.owner) for j in alpha] == [("j2", "alpha", "owner2"), ("j0", "alpha", "owner0")]
        assert [j.id for j in store.list_jobs(10, None, JobState.UNSPECIFIED, {"beta", "default"})] == ["j3", "j1"]
        assert store.list_jobs(10, None, JobState.UNSPECIFIED, set()) == []
        assert len(store.list_jobs(10, None, JobState.UNSPECIFIED, None)) == 4
        got = store.get_job("j1")
        assert got is not None and (got.project, got.owner) == ("beta", "owner1")

    def test_counts_jobs_by_state(self, store: JobStore) -> None:
        assert store.count_jobs_by_state().get(JobState.NOT_STARTED, 0) == 0
        for i in range(3):
            store.create_job(new_job(f"j{i}", T0 + timedelta(seconds=i)))
        store.transition("j1", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        counts = store.count_jobs_by_state()
        assert counts[JobState.NOT_STARTED] == 2
        assert counts[JobState.IN_PROGRESS] == 1
        assert counts.get(JobState.CANCELLED, 0) == 0

    def test_same_create_time_orders_by_id(self, store: JobStore) -> None:
        for job_id in ("b", "a", "c"):
            store.create_job(new_job(job_id))
        first = store.list_jobs(2, None, JobState.UNSPECIFIED)
        rest = store.list_jobs(2, PageCursor(first[-1].create_time, first[-1].id), JobState.UNSPECIFIED)
        assert [j.id for j in first + rest] == ["c", "b", "a"]

    def test_delete_refuses_an_in_progress_job_and_removes_events_otherwise(self, store: JobStore) -> None:
        self.started(store, "a")
        with pytest.raises(FailedPrecondition):
            store.delete_job("a")
        store.transition("a", {JobState.IN_PROGRESS}, JobState.CANCELLED, T0)
        assert store.delete_job("a") is True
        assert store.get_job("a") is None
        assert store.read_events("a", 0) == []
        assert store.delete_job("a") is False

    # --- state machine ---

    def test_transition_is_compare_and_set(self, store: JobStore) -> None:
        store.create_job(new_job("a"))
        assert store.transition("a", {JobState.IN_PROGRESS}, JobState.CANCELLED, T0) is None
        event = store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        assert event is not None and event.sequence == 1 and event.source.kind is SourceKind.JOB
        assert event.patch == {"state": "IN_PROGRESS"} and event.job_state is JobState.IN_PROGRESS
        assert store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0) is None
        job = store.get_job("a")
        assert job is not None and job.start_time == T0 and job.end_time is None

    def test_of_concurrent_transitions_exactly_one_wins(self, store: JobStore) -> None:
        store.create_job(new_job("a"))
        results: list[object] = []
        barrier = threading.Barrier(8)

        def attempt() -> None:
            barrier.wait()
            results.append(store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0))

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 1
        assert [e.sequence for e in store.read_events("a", 0)] == [1]

    def test_a_terminal_transition_records_end_time_and_error(self, store: JobStore) -> None:
        self.started(store, "a")
        end = T0 + timedelta(minutes=5)
        event = store.transition("a", {JobState.IN_PROGRESS}, JobState.FINISHED_WITH_ERROR, end, "client 1 died")
        assert event is not None and event.patch == {"state": "FINISHED_WITH_ERROR", "error_message": "client 1 died"}
        job = store.get_job("a")
        assert job is not None and job.state is JobState.FINISHED_WITH_ERROR
        assert job.error_message == "client 1 died" and job.end_time == end

    # --- event log ---

    def test_report_changes_get_contiguous_sequences_and_merge_into_the_report(self, store: JobStore) -> None:
        self.started(store, "a")
        client = Source(SourceKind.CLIENT, 1, "u1")
        first = {"host_type": "server", "rounds": {"1": {"fit_round_metrics": {"val - acc.$": 0.5}}}}
        second = {"host_type": "server", "rounds": {"1": {"fit_round_metrics": {"val - acc.$": 0.75}}, "2": {}}}
        e2 = append_change(store, "a", SERVER_SOURCE, {}, first, T0)
        e3 = append_change(store, "a", client, {}, {"shutdown": "t"}, T0)
        e4 = append_change(store, "a", SERVER_SOURCE, first, second, T0)
        assert e4 is not None and e4.patch == diff(first, second)
        assert [e.sequence for e in (e2, e3, e4) if e] == [2, 3, 4]
        assert report_of(store, "a", SERVER_SOURCE) == second
        assert report_of(store, "a", client) == {"shutdown": "t"}
        job = store.get_job("a")
        assert job is not None and job.server_metrics == second and job.clients[1].metrics == {"shutdown": "t"}
        assert job.last_sequence == 4

    def test_removals_and_type_changes_persist_exactly(self, store: JobStore) -> None:
        self.started(store, "a")
        reports = [{"a": 1, "b": {"c": 2}}, {"a": {"x": 1}, "b": 3}, {"b": {"d.e": [1, 2]}}]
        previous: dict[str, object] = {}
        for report in reports:
            append_change(store, "a", SERVER_SOURCE, previous, report, T0)
            assert report_of(store, "a", SERVER_SOURCE) == report
            previous = report

    def test_a_change_with_its_patch_persists_as_one_without(self, store: JobStore) -> None:
        """The ingest hands over the patch it found in the report's text."""
        self.started(store, "a")
        reports: list[JsonObject] = [
            {"a": 1, "r": {"1": {"x": 0.5}}},
            {"a": 1, "r": {"1": {"x": 0.5}, "2": {"y": [1, 2.0]}}},
            {"b": 2},
        ]
        previous: JsonObject = {}
        for report in reports:
            change = ReportChange("a", SERVER_SOURCE, previous, report, T0, diff(previous, report))
            event = store.append_report_changes([change])[0]
            assert isinstance(event, MetricsEvent) and event.patch == diff(previous, report)
            assert json.dumps(report_of(store, "a", SERVER_SOURCE)) == json.dumps(report)
            previous = report
        # A later change without its patch merges into what those left.
        append_change(store, "a", SERVER_SOURCE, previous, {"b": 2, "c": 3}, T0)
        assert report_of(store, "a", SERVER_SOURCE) == {"b": 2, "c": 3}

    def test_events_replay_in_order_after_any_sequence_and_rebuild_the_report(self, store: JobStore) -> None:
        self.started(store, "a")
        previous: dict[str, object] = {}
        for n in range(1, 6):
            report = {"rounds": {str(i): {"loss": 1 / i} for i in range(1, n + 1)}}
            append_change(store, "a", SERVER_SOURCE, previous, report, T0)
            previous = report
        events = store.read_events("a", 0)
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
        for after in range(7):
            assert [e.sequence for e in store.read_events("a", after)] == list(range(after + 1, 7))
        assert [e.sequence for e in store.read_events("a", 0, limit=2)] == [1, 2]
        rebuilt: dict[str, object] = {}
        for event in events:
            if event.source.kind is SourceKind.SERVER:
                rebuilt = apply(rebuilt, event.patch)
        assert rebuilt == previous

    def test_a_batch_of_changes_appends_in_order_across_jobs(self, store: JobStore) -> None:
        self.started(store, "a")
        self.started(store, "b")
        store.create_job(new_job("idle"))
        client = Source(SourceKind.CLIENT, 0, "u0")
        events = store.append_report_changes(
            [
                ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
                ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0),
                ReportChange("idle", SERVER_SOURCE, {}, {"z": 1}, T0),  # not running: refused, nothing else
                ReportChange("a", client, {}, {"w": 2}, T0),
                ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 1}, T0),  # no change
                ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 3}, T0),
            ]
        )
        assert [(e.job_id, e.sequence) if e else None for e in events] == [
            ("a", 2),
            ("b", 2),
            None,
            ("a", 3),
            None,
            ("a", 4),
        ]
        assert report_of(store, "a", SERVER_SOURCE) == {"x": 3} and report_of(store, "a", client) == {"w": 2}
        assert store.read_events("idle", 0) == []

    def test_a_change_that_cannot_be_stored_is_set_aside_alone(self, store: JobStore) -> None:
        self.started(store, "a")
        client = Source(SourceKind.CLIENT, 0, "u0")
        results = store.append_report_changes(
            [
                ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
                ReportChange("a", client, {}, {"loss": float("nan")}, T0),  # JSON has no NaN: ingest never sends it
                ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 2}, T0),
            ]
        )
        assert isinstance(results[1], SetAside) and "NaN" in results[1].reason
        assert [(e.sequence if isinstance(e, MetricsEvent) else e) for e in (results[0], results[2])] == [2, 3]
        assert report_of(store, "a", SERVER_SOURCE) == {"x": 2} and report_of(store, "a", client) == {}
        assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]

    def test_a_notice_is_a_job_event_that_changes_no_sources_report(self, store: JobStore) -> None:
        # What the ingest appends when it sets a report aside (metrics/ingest.py `notice`).
        self.started(store, "a")
        notice = append_change(store, "a", JOB_SOURCE, {}, {"notice": "a report was set aside"}, T0)
        assert notice is not None and notice.sequence == 2 and notice.source == JOB_SOURCE
        assert notice.patch == {"notice": "a report was set aside"} and notice.job_state is JobState.IN_PROGRESS
        job = store.get_job("a")
        assert job is not None and job.state is JobState.IN_PROGRESS
        assert job.server_metrics == {} and all(c.metrics == {} for c in job.clients)

    def test_an_unchanged_report_appends_nothing(self, store: JobStore) -> None:
        self.started(store, "a")
        assert append_change(store, "a", SERVER_SOURCE, {"x": 1}, {"x": 1}, T0) is None
        assert [e.sequence for e in store.read_events("a", 0)] == [1]

    def test_report_changes_are_refused_unless_in_progress(self, store: JobStore) -> None:
        store.create_job(new_job("a"))
        assert append_change(store, "a", SERVER_SOURCE, {}, {"x": 1}, T0) is None
        assert append_change(store, "missing", SERVER_SOURCE, {}, {"x": 1}, T0) is None
        self.started(store, "b")
        store.transition("b", {JobState.IN_PROGRESS}, JobState.CANCELLED, T0)
        assert append_change(store, "b", SERVER_SOURCE, {}, {"x": 1}, T0) is None
        assert [e.job_state for e in store.read_events("b", 0)][-1] is JobState.CANCELLED

    def test_concurrent_appends_never_share_or_skip_a_sequence(self, store: JobStore) -> None:
        self.started(store, "a")

        def append(index: int) -> None:
            source = Source(SourceKind.CLIENT, index % 2, f"u{index % 2}")
            for n in range(25):
                append_change(store, "a", source, {}, {f"t{index}": n}, T0)

        threads = [threading.Thread(target=append, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [e.sequence for e in store.read_events("a", 0, limit=1000)] == list(range(1, 152))

    # --- launch bookkeeping ---

    def test_launch_and_client_states_are_recorded(self, store: JobStore) -> None:
        self.started(store, "a")
        refs = [ProcessRef(11, 1.5, "/l/c0"), ProcessRef(12, 2.5, "/l/c1")]
        store.record_launch("a", Launch("127.0.0.1:9001", "su", ProcessRef(10, 0.5, "/l/s"), ["c0", "c1"], refs, T0))
        store.set_client_state("a", 1, ClientState.FAILED, "exited with code 2")
        job = store.get_job("a")
        assert job is not None
        assert job.server_uuid == "su" and job.server_process == ProcessRef(10, 0.5, "/l/s")
        assert job.server_address == "127.0.0.1:9001"
        assert [c.uuid for c in job.clients] == ["c0", "c1"] and [c.process for c in job.clients] == refs
        assert job.clients[0].state is ClientState.RUNNING
        assert job.clients[1].state is ClientState.FAILED and job.clients[1].error_message == "exited with code 2"

    @pytest.mark.parametrize("end", [JobState.FINISHED_SUCCESSFULLY, JobState.FINISHED_WITH_ERROR, JobState.CANCELLED])
    def test_after_a_terminal_transition_no_client_is_left_unended(self, store: JobStore, end: JobState) -> None:
        # Three clients: one ended on its own (its state and reason are kept), one still running, one never
        # launched (a start that failed part-way: only the clients it launched are recorded RUNNING).
        store.create_job(new_job("a", clients=3))
        store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        refs = [ProcessRef(11, 1.5, "/l/c0"), ProcessRef(12, 2.5, "/l/c1"), ProcessRef()]
        store.record_launch("a", Launch("127.0.0.1:9001", "su", ProcessRef(10), ["c0", "c1", "c2"], refs, T0))
        store.set_client_state("a", 0, ClientState.FAILED, "exited with code 2")
        assert store.get_job("a").clients[2].state is ClientState.UNSPECIFIED  # type: ignore[union-attr]
        assert store.transition("a", {JobState.IN_PROGRESS}, end, T0, "why") is not None
        job = store.get_job("a")
        assert job is not None and job.error_message == "why"
        assert [(c.state, c.error_message) for c in job.clients] == [
            (ClientState.FAILED, "exited with code 2"),
            (ClientState.STOPPED, f"stopped: the job ended {end.name} before its exit was seen"),
            (ClientState.STOPPED, f"not launched: the job ended {end.name} before it was"),
        ]

    def test_a_job_that_never_started_ends_with_no_client_unended(self, store: JobStore) -> None:
        store.create_job(new_job("a"))
        assert store.transition("a", {JobState.NOT_STARTED}, JobState.CANCELLED, T0) is not None
        job = store.get_job("a")
        assert job is not None
        assert {c.state for c in job.clients} == {ClientState.STOPPED}

    def test_a_transition_that_is_not_terminal_leaves_clients_alone(self, store: JobStore) -> None:
        store.create_job(new_job("a"))
        store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        job = store.get_job("a")
        assert job is not None and {c.state for c in job.clients} == {ClientState.UNSPECIFIED}

    def test_jobs_in_state(self, store: JobStore) -> None:
        store.create_job(new_job("idle"))
        self.started(store, "busy")
        assert [j.id for j in store.jobs_in_state(JobState.IN_PROGRESS)] == ["busy"]

    # --- stops sent to sites and not yet confirmed ---

    def test_an_unconfirmed_stop_is_pending_and_marks_its_client_until_its_site_confirms_it(
        self, store: JobStore
    ) -> None:
        self.started(store, "a")
        store.stops.record([UnconfirmedStop("c1", "site-a", "a", 1)])
        store.stops.record([UnconfirmedStop("c1", "site-a", "a", 1)])  # again: still one
        assert store.stops.pending() == [UnconfirmedStop("c1", "site-a", "a", 1)]
        job = store.get_job("a")
        assert job is not None and [c.stop_unconfirmed for c in job.clients] == [False, True]
        store.stops.settle("c1", confirmed=True)
        assert store.stops.pending() == []
        job = store.get_job("a")
        assert job is not None and not job.clients[1].stop_unconfirmed

    def test_a_stop_given_up_on_leaves_its_client_unconfirmed(self, store: JobStore) -> None:
        self.started(store, "a")
        store.stops.record([UnconfirmedStop("c0", "site-a", "a", 0), UnconfirmedStop("c1", "site-b", "a", 1)])
        store.stops.settle("c0", confirmed=False)
        store.stops.settle("unknown", confirmed=True)  # nothing recorded: nothing happens
        assert store.stops.pending() == [UnconfirmedStop("c1", "site-b", "a", 1)]
        job = store.get_job("a")
        assert job is not None and [c.stop_unconfirmed for c in job.clients] == [True, True]

    def test_unconfirmed_stops_outlive_their_deleted_job(self, store: JobStore) -> None:
        self.started(store, "a")
        store.stops.record([UnconfirmedStop("c1", "site-a", "a", 1)])
        assert store.transition("a", {JobState.IN_PROGRESS}, JobState.CANCELLED, T0) is not None
        assert store.delete_job("a")
        assert store.stops.pending() == [UnconfirmedStop("c1", "site-a", "a", 1)]
        store.stops.settle("c1", confirmed=True)  # its job is gone: only the stop is forgotten
        assert store.stops.pending() == []


class TestSqliteStore(JobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[JobStore]:
        from florist_grpc.store.sqlite import SqliteStore

        store = SqliteStore(tmp_path / "florist.sqlite3")
        yield store
        store.close()

    @pytest.fixture
    def small_store(self, tmp_path: Path) -> Iterator[JobStore]:
        from florist_grpc.store.sqlite import SqliteStore

        store = SqliteStore(tmp_path / "small.sqlite3", keep_changes=5)
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Reopen:
        from florist_grpc.store.sqlite import SqliteStore

        def again(store: JobStore) -> JobStore:
            store.close()
            return SqliteStore(tmp_path / "florist.sqlite3")

        return again

    def test_data_survives_reopening(self, tmp_path: Path) -> None:
        from florist_grpc.store.sqlite import SqliteStore

        first = SqliteStore(tmp_path / "db")
        self.started(first, "a")
        append_change(first, "a", SERVER_SOURCE, {}, {"fit_end": "t"}, T0)
        first.close()
        again = SqliteStore(tmp_path / "db")
        job = again.get_job("a")
        assert job is not None and job.server_metrics == {"fit_end": "t"} and job.last_sequence == 2

    def test_a_database_from_before_projects_is_brought_up_to_date(self, tmp_path: Path) -> None:
        """Its jobs belong to the default project (what a caller of every project creates in), owned by nobody."""
        import sqlite3

        from florist_grpc.store.codec import job_to_doc
        from florist_grpc.store.sqlite import SqliteStore

        old = sqlite3.connect(tmp_path / "db")
        old.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, create_us INTEGER NOT NULL,"
            " start_us INTEGER, end_us INTEGER, state INTEGER NOT NULL, last_sequence INTEGER NOT NULL DEFAULT 0,"
            " doc TEXT NOT NULL)"
        )
        doc = job_to_doc(new_job("old"))
        del doc["project"], doc["owner"]
        old.execute("INSERT INTO jobs (id, create_us, state, doc) VALUES ('old', 0, 1, ?)", (json.dumps(doc),))
        old.commit()
        old.close()
        store = SqliteStore(tmp_path / "db")
        job = store.get_job("old")
        assert job is not None and (job.project, job.owner) == ("default", "")
        assert [j.id for j in store.list_jobs(10, None, JobState.UNSPECIFIED, {"default"})] == ["old"]


class TestMongoStoreOnMongomock(JobStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[JobStore]:
        import mongomock

        from florist_grpc.store.mongo import MongoStore
        from florist_grpc.testing.mongomock_compat import patch_mongomock

        patch_mongomock()
        yield MongoStore(mongomock.MongoClient(), "florist_test")

    @pytest.fixture
    def small_store(self) -> JobStore:
        import mongomock

        from florist_grpc.store.mongo import MongoStore

        return MongoStore(mongomock.MongoClient(), "florist_small", keep_changes=5)

    @pytest.fixture
    def reopen(self) -> Reopen:
        from florist_grpc.store.mongo import MongoStore

        def again(store: JobStore) -> JobStore:
            assert isinstance(store, MongoStore)
            return MongoStore(store._client, store.database)

        return again

    def test_a_job_stored_before_projects_is_the_default_projects(self, store: JobStore) -> None:
        from florist_grpc.store.mongo import MongoStore

        assert isinstance(store, MongoStore)
        store.create_job(new_job("old"))
        store._jobs.update_one({"_id": "old"}, {"$unset": {"project": "", "doc.project": "", "doc.owner": ""}})
        job = store.get_job("old")
        assert job is not None and (job.project, job.owner) == ("default", "")
        assert [j.id for j in store.list_jobs(10, None, JobState.UNSPECIFIED, {"default"})] == ["old"]
        assert store.list_jobs(10, None, JobState.UNSPECIFIED, {"alpha"}) == []

    def test_an_event_written_before_a_crash_is_rolled_forward(self, store: JobStore) -> None:
        """A writer that died between inserting event N and advancing the job leaves no gap and no loss."""
        from florist_grpc.store.mongo import MongoStore

        assert isinstance(store, MongoStore)
        self.started(store, "a")
        orphan = {
            "_id": "a/2",
            "job_id": "a",
            "sequence": 2,
            "time_us": 0,
            "patch": '{"x": 1}',
            "job_state": 2,
            "source": '{"kind": 1, "client_index": -1, "client_uuid": ""}',
            "update": '{"$set": {"reports.server.x": 1}}',
        }
        store._events.insert_one(orphan)  # the crash: the job document still says last_sequence == 1
        event = append_change(store, "a", SERVER_SOURCE, {"x": 1}, {"x": 1, "y": 2}, T0)
        assert event is not None and event.sequence == 3
        assert report_of(store, "a", SERVER_SOURCE) == {"x": 1, "y": 2}
        assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]


@pytest.mark.skipif(not os.environ.get("FLORIST_TEST_MONGODB_URI"), reason="FLORIST_TEST_MONGODB_URI not set")
class TestMongoStoreOnRealMongo(JobStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[JobStore]:
        import pymongo

        from florist_grpc.store.mongo import MongoStore

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(os.environ["FLORIST_TEST_MONGODB_URI"])
        name = f"florist_test_{os.getpid()}"
        yield MongoStore(client, name)
        client.drop_database(name)
        client.close()

    @pytest.fixture
    def small_store(self) -> Iterator[JobStore]:
        import pymongo

        from florist_grpc.store.mongo import MongoStore

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(os.environ["FLORIST_TEST_MONGODB_URI"])
        name = f"florist_small_{os.getpid()}"
        yield MongoStore(client, name, keep_changes=5)
        client.drop_database(name)
        client.close()

    @pytest.fixture
    def reopen(self) -> Reopen:
        from florist_grpc.store.mongo import MongoStore

        def again(store: JobStore) -> JobStore:
            assert isinstance(store, MongoStore)
            return MongoStore(store._client, store.database)

        return again
