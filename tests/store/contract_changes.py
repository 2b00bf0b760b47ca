"""The changes log, part of the JobStore contract (mixed into JobStoreContract, so every backend runs it).

Every job-level change gets the next store-wide revision, persisted and strictly increasing; the job carries the
revision of its last change; the log replays from any kept revision; listeners get every change in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from florist_grpc.domain.errors import OutOfRange
from florist_grpc.domain.model import (
    SERVER_SOURCE,
    ChangeType,
    Client,
    ClientState,
    Job,
    JobChange,
    JobState,
    Launch,
    ProcessRef,
    SourceKind,
)
from florist_grpc.store.base import JobStore, ReportChange

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Reopen = Callable[[JobStore], JobStore]


def job(job_id: str, project: str = "default") -> Job:
    from tests.store.test_store_contract import new_job

    made = new_job(job_id)
    made.project = project
    return made


def kinds(changes: list[JobChange]) -> list[tuple[int, ChangeType, str]]:
    return [(c.revision, c.type, c.job.id if c.job else "") for c in changes]


def without_reports(job: Job | None) -> Job:
    """A job as the changes log holds it: without its accumulated reports."""
    assert job is not None
    return replace(job, server_metrics={}, clients=[replace(c, metrics={}) for c in job.clients])


def clients_end(store: JobStore, job_id: str, clients: int, seen: list[JobChange]) -> None:
    """Every client of the job ends, the odd ones failing, with a report between two ends; after each end the
    listener's snapshot (the last of `seen`) is the job as the store reads it then."""
    for i in range(clients):
        if i % 7 == 3:  # events move last_sequence without a change of their own
            source = replace(SERVER_SOURCE, kind=SourceKind.CLIENT, client_index=i)
            store.append_report_changes([ReportChange(job_id, source, {}, {"fit_end": str(i)}, T0)])
        if i % 2:
            store.set_client_state(job_id, i, ClientState.FAILED, f"client {i} failed")
        else:
            store.set_client_state(job_id, i, ClientState.FINISHED)
        assert seen[-1].job == without_reports(store.get_job(job_id)), i


class ChangesContract:
    """Subclasses provide `store`, `small_store` (keeps at least 5 changes) and `reopen`."""

    def test_every_job_level_change_takes_the_next_revision_and_stamps_the_job(self, store: JobStore) -> None:
        assert store.current_revision() == 0
        created = store.create_job(job("a"))
        assert created.revision == 1
        store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        launch = Launch("127.0.0.1:1", "s", ProcessRef(), ["c0", "c1"], [ProcessRef(), ProcessRef()], T0)
        store.record_launch("a", launch)
        store.set_client_state("a", 1, ClientState.FAILED, "boom")
        store.create_job(job("b"))
        assert store.current_revision() == 5
        changes = store.read_changes(0)
        assert kinds(changes) == [
            (1, ChangeType.ADDED, "a"),
            (2, ChangeType.MODIFIED, "a"),
            (3, ChangeType.MODIFIED, "a"),
            (4, ChangeType.MODIFIED, "a"),
            (5, ChangeType.ADDED, "b"),
        ]
        # Each change holds the job as it was right after it, and the state it left.
        assert [(c.previous_state, c.job.state) for c in changes[:2] if c.job] == [
            (JobState.UNSPECIFIED, JobState.NOT_STARTED),
            (JobState.NOT_STARTED, JobState.IN_PROGRESS),
        ]
        assert changes[2].job is not None and changes[2].job.server_uuid == "s"
        assert changes[3].job is not None and changes[3].job.clients[1].state is ClientState.FAILED
        got = store.get_job("a")
        assert got is not None and got.revision == 4

    def test_a_deleted_job_leaves_its_last_state_in_a_deleted_change(self, store: JobStore) -> None:
        store.create_job(job("a", "alpha"))
        assert store.delete_job("a")
        deleted = store.read_changes(1)
        assert kinds(deleted) == [(2, ChangeType.DELETED, "a")]
        assert deleted[0].job is not None and deleted[0].job.project == "alpha" and deleted[0].job.revision == 2

    def test_refused_writes_and_report_changes_log_nothing_but_a_round_the_server_finished(
        self, store: JobStore
    ) -> None:
        store.create_job(job("a"))
        store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        assert store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0) is None
        running = store.get_job("a")
        assert running is not None
        client = running.client_source(0)
        round_1 = {"rounds": {"1": {"fit_round_end": "x", "eval_round_end": "y"}}}
        started = {"rounds": {"1": {"fit_round_start": "x"}}}
        store.append_report_changes([ReportChange("a", client, {}, round_1, T0)])
        store.append_report_changes([ReportChange("a", SERVER_SOURCE, {}, started, T0)])
        assert store.current_revision() == 2  # the client's round and a started round are no job-level change
        store.append_report_changes([ReportChange("a", SERVER_SOURCE, started, round_1, T0)])
        changes = store.read_changes(2)
        assert kinds(changes) == [(3, ChangeType.MODIFIED, "a")]
        assert changes[0].job is not None and changes[0].job.current_round == 1
        assert changes[0].job.server_metrics == {}  # a change holds no reports
        got = store.get_job("a")
        assert got is not None and (got.current_round, got.revision) == (1, 3)

    def test_changes_replay_from_any_revision_in_pages(self, store: JobStore) -> None:
        for i in range(7):
            store.create_job(job(f"j{i}"))
        assert [c.revision for c in store.read_changes(2, limit=3)] == [3, 4, 5]
        assert [c.revision for c in store.read_changes(5)] == [6, 7]
        assert store.read_changes(7) == []

    def test_a_revision_beyond_the_current_one_is_out_of_range(self, store: JobStore) -> None:
        store.create_job(job("a"))
        with pytest.raises(OutOfRange):
            store.read_changes(2)

    def test_changes_older_than_the_log_keeps_are_out_of_range(self, small_store: JobStore) -> None:
        for i in range(210):
            small_store.create_job(job(f"j{i}"))
        with pytest.raises(OutOfRange, match="no longer kept"):
            small_store.read_changes(100)
        kept = small_store.read_changes(195)  # at least the last 5 stay; 196.. are kept
        assert kept[0].revision == 196 and kept[-1].revision == 210
        with pytest.raises(OutOfRange):
            small_store.read_changes(194)

    def test_clients_ends_replay_as_the_jobs_snapshots_also_past_trims_and_reopening(
        self, small_store: JobStore, store: JobStore, reopen: Reopen
    ) -> None:
        # A client's state change is logged as a delta of the job (store/client_deltas.py); a reader rebuilds
        # the same snapshots the listeners got, from any kept revision, also once older changes are trimmed.
        for target, clients in ((small_store, 130), (store, 40)):  # 130: past a trim, which keeps the base
            seen: list[JobChange] = []
            target.on_change(seen.append)
            target.create_job(replace(job("many"), clients=[Client(data_path=f"/d/{i}") for i in range(clients)]))
            target.transition("many", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
            clients_end(target, "many", clients, seen)
            for after in (seen[-5].revision - 1, seen[-1].revision - 1):
                assert target.read_changes(after) == [c for c in seen if c.revision > after]
        assert store.read_changes(0) == seen
        again = reopen(store)  # knows no snapshot: it logs the job whole first, then deltas again
        seen = list(again.read_changes(0))
        again.on_change(seen.append)
        again.create_job(replace(job("more"), clients=[Client(data_path=f"/d/{i}") for i in range(20)]))
        again.transition("more", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        again.set_client_state("many", 0, ClientState.STOPPED, "stopped after a restart")
        clients_end(again, "more", 20, seen)
        assert [c.job for c in seen if c.job and c.job.id == "many"][-1] == without_reports(again.get_job("many"))
        assert again.read_changes(0) == seen

    def test_a_trim_keeps_the_bases_of_the_older_deltas_it_keeps_for_a_newer_ones_base(
        self, small_store: JobStore
    ) -> None:
        # A trim at revision 100 keeps b's delta (98) and so b's base (4), and with it a's delta (5): a's base (2)
        # must stay too, or a watch resuming at 3 or 4 cannot rebuild a (review of issue 23's deltas).
        seen: list[JobChange] = []
        small_store.on_change(seen.append)
        two = [Client(data_path="/d/0"), Client(data_path="/d/1")]
        for name in ("a", "b"):
            small_store.create_job(replace(job(name), clients=two))
            small_store.transition(name, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        small_store.set_client_state("a", 0, ClientState.FINISHED)  # revision 5: a delta of a's 2
        for until_revision, then in ((97, "b"), (100, "")):
            while small_store.current_revision() < until_revision:
                small_store.create_job(job(f"filler{small_store.current_revision()}"))
            if then:
                small_store.set_client_state(then, 0, ClientState.FINISHED)  # revision 98: a delta of b's 4
        assert small_store.current_revision() == 100
        resumable = 0
        for after in range(100):
            try:
                kept = small_store.read_changes(after)
            except OutOfRange:
                continue
            resumable += 1
            assert kept == [c for c in seen if c.revision > after][: len(kept)], after
        assert resumable >= 98  # revision 1 (an ADDED nothing needs) went; everything from 2 on was kept

    def test_revisions_survive_reopening_and_continue(self, store: JobStore, reopen: Reopen) -> None:
        # With request ids: mongomock re-checks a unique index with a partial filter as if it had none on reopen.
        store.create_job(job("a"), "ra")
        store.create_job(job("b"), "rb")
        again = reopen(store)
        assert again.current_revision() == 2
        assert again.create_job(job("c"), "rc").revision == 3
        assert kinds(again.read_changes(0)) == [
            (1, ChangeType.ADDED, "a"),
            (2, ChangeType.ADDED, "b"),
            (3, ChangeType.ADDED, "c"),
        ]

    def test_listeners_get_every_change_in_revision_order_also_from_concurrent_writers(self, store: JobStore) -> None:
        seen: list[int] = []
        store.on_change(lambda change: seen.append(change.revision))

        def writer(n: int) -> None:
            for i in range(15):
                store.create_job(job(f"w{n}-{i}"))
                store.transition(f"w{n}-{i}", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert seen == list(range(1, 121))
        assert [c.revision for c in store.read_changes(0, limit=500)] == seen
