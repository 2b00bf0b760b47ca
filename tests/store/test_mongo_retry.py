"""A batch retried after an outage in the middle of its writes (MongoDB without transactions, as compose.yaml
runs it). The follower keeps its baselines when the store raises Unavailable and sends the same sources again,
with the same `previous`; whatever the failed call wrote before the outage (events, perhaps the job document
too) must neither be appended twice nor leave the stored report different from the source's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.merge_patch import apply
from florist_grpc.domain.model import JOB_SOURCE, SERVER_SOURCE, JobState, JsonObject, Source
from florist_grpc.store.base import ReportChange
from florist_grpc.store.mongo import MongoStore
from florist_grpc.store.mongo_batch import event_doc
from tests.store.test_mongo_batch import CLIENTS, mongo_store, started
from tests.store.test_store_contract import T0, report_of


def fail_advancing_once(store: MongoStore, monkeypatch: pytest.MonkeyPatch, batch_ingest: bool, applied: bool) -> None:
    """The next job-document advance raises AutoReconnect: before reaching the server, or after it applied
    the write (the reply was lost)."""
    method = "bulk_write" if batch_ingest else "update_one"
    original: Callable[..., Any] = getattr(store._jobs, method)

    def lost(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(store._jobs, method, original)
        if applied:
            original(*args, **kwargs)
        raise AutoReconnect("connection lost")

    monkeypatch.setattr(store._jobs, method, lost)


def rebuilt(store: MongoStore, job_id: str, source: Source) -> JsonObject:
    """The source's report as a StreamMetrics client rebuilds it from the events."""
    report: JsonObject = {}
    for event in store.read_events(job_id, 0):
        if event.source == source:
            report = apply(report, event.patch)
    return report


@pytest.mark.parametrize("applied", [False, True], ids=["before-advancing", "reply-lost"])
@pytest.mark.parametrize("batch_ingest", [True, False], ids=["batch", "per-change"])
def test_a_retried_batch_appends_nothing_twice(
    monkeypatch: pytest.MonkeyPatch, batch_ingest: bool, applied: bool
) -> None:
    store = mongo_store(batch_ingest)
    started(store, "a", "b")
    changes = [
        ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
        ReportChange("a", CLIENTS[0], {}, {"y": 2}, T0),
        ReportChange("b", SERVER_SOURCE, {}, {"z": 3}, T0),
    ]
    fail_advancing_once(store, monkeypatch, batch_ingest, applied)
    with pytest.raises(Unavailable):
        store.append_report_changes(changes)
    store.append_report_changes(changes)  # the follower's retry: same baselines
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]
    assert [e.sequence for e in store.read_events("b", 0)] == [1, 2]
    assert report_of(store, "a", SERVER_SOURCE) == {"x": 1} and report_of(store, "b", SERVER_SOURCE) == {"z": 3}
    assert not store._unsettled._failures  # settled: the next appends read no reports


@pytest.mark.parametrize("batch_ingest", [True, False], ids=["batch", "per-change"])
def test_a_retry_carrying_a_newer_report_rebuilds_that_report(
    monkeypatch: pytest.MonkeyPatch, batch_ingest: bool
) -> None:
    store = mongo_store(batch_ingest)
    started(store, "a")
    first = {"loss": 0.9}
    assert store.append_report_changes([ReportChange("a", SERVER_SOURCE, {}, first, T0)])[0] is not None
    fail_advancing_once(store, monkeypatch, batch_ingest, applied=False)
    with pytest.raises(Unavailable):
        store.append_report_changes([ReportChange("a", SERVER_SOURCE, first, {"loss": 0.5, "tmp": 1}, T0)])
    # By the retry the source has reported again: "tmp" is gone. The baseline is still `first`.
    newest = {"loss": 0.4}
    store.append_report_changes([ReportChange("a", SERVER_SOURCE, first, newest, T0)])
    assert report_of(store, "a", SERVER_SOURCE) == newest
    assert rebuilt(store, "a", SERVER_SOURCE) == newest


def test_after_a_restart_the_jobs_to_recover_hold_every_written_event(monkeypatch: pytest.MonkeyPatch) -> None:
    store = mongo_store()
    started(store, "a")
    fail_advancing_once(store, monkeypatch, batch_ingest=True, applied=False)
    with pytest.raises(Unavailable):  # the control plane dies here, its events written, the job not advanced
        store.append_report_changes([ReportChange("a", SERVER_SOURCE, {}, {"x": 1, "tmp": 1}, T0)])
    restarted = MongoStore(store._client, "florist_test")
    # Recovery (jobs/recovery.py) takes its baselines from jobs_in_state: they must include the written event.
    (job,) = restarted.jobs_in_state(JobState.IN_PROGRESS)
    assert job.last_sequence == 2 and job.server_metrics == {"x": 1, "tmp": 1}
    restarted.append_report_changes([ReportChange("a", SERVER_SOURCE, job.server_metrics, {"x": 2}, T0)])
    assert [e.sequence for e in restarted.read_events("a", 0)] == [1, 2, 3]
    assert rebuilt(restarted, "a", SERVER_SOURCE) == {"x": 2} == report_of(restarted, "a", SERVER_SOURCE)


def test_a_job_whose_written_terminal_event_was_not_applied_is_not_recovered_as_running() -> None:
    store = mongo_store()
    started(store, "a")
    # A transition that died after inserting its event: the log says the job ended.
    store._events.insert_one(
        event_doc(
            "a",
            2,
            T0,
            JOB_SOURCE,
            '{"state": "JOB_STATE_CANCELLED"}',
            JobState.CANCELLED,
            {"$set": {"state": int(JobState.CANCELLED)}},
        )
    )
    assert store.jobs_in_state(JobState.IN_PROGRESS) == []


def test_sources_of_a_failed_batch_retried_in_separate_batches_append_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = mongo_store()
    started(store, "a")
    changes = [
        ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
        ReportChange("a", CLIENTS[0], {}, {"y": 2}, T0),
    ]
    fail_advancing_once(store, monkeypatch, batch_ingest=True, applied=False)
    with pytest.raises(Unavailable):
        store.append_report_changes(changes)
    # The server's new report came in on its own before the client's retry was due.
    store.append_report_changes([ReportChange("a", SERVER_SOURCE, {}, {"x": 2}, T0)])
    store.append_report_changes([changes[1]])
    assert [(e.sequence, e.source) for e in store.read_events("a", 0)][1:] == [
        (2, SERVER_SOURCE),
        (3, CLIENTS[0]),
        (4, SERVER_SOURCE),
    ]
    assert report_of(store, "a", CLIENTS[0]) == {"y": 2} == rebuilt(store, "a", CLIENTS[0])
