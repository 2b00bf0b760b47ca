"""MongoStore's batch ingest (store/mongo_batch.py) on mongomock: what the contract suite cannot see.

The batch path must give exactly what the per-change path gives (same events, same stored reports), in one
insert_many and one bulk_write, while keeping the write-ahead guarantees: a crash between the two writes is
rolled forward, a sequence another writer took is retried, a change MongoDB refuses is set aside alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import mongomock
import pytest
from pymongo.errors import AutoReconnect, BulkWriteError

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import SERVER_SOURCE, JobState, JsonObject, MetricsEvent, Source, SourceKind
from florist_grpc.store.base import ReportChange, SetAside
from florist_grpc.store.mongo import MongoStore
from florist_grpc.testing.mongomock_compat import MAX_DOCUMENT_BYTES, patch_mongomock
from tests.store.test_store_contract import T0, new_job, report_of

CLIENTS = [Source(SourceKind.CLIENT, i, f"u{i}") for i in range(3)]


def mongo_store(batch_ingest: bool = True) -> MongoStore:
    patch_mongomock()
    return MongoStore(mongomock.MongoClient(), "florist_test", batch_ingest=batch_ingest)


@pytest.fixture
def store() -> Iterator[MongoStore]:
    store = mongo_store()
    yield store
    store.close()


def started(store: MongoStore, *job_ids: str) -> None:
    for job_id in job_ids:
        store.create_job(new_job(job_id, clients=len(CLIENTS)))
        assert store.transition(job_id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0) is not None


def sequences(results: list[MetricsEvent | SetAside | None]) -> list[tuple[str, int] | str | None]:
    return [
        (r.job_id, r.sequence) if isinstance(r, MetricsEvent) else ("set aside" if r is not None else None)
        for r in results
    ]


def count_calls(monkeypatch: pytest.MonkeyPatch, store: MongoStore) -> list[str]:
    """Record every write the store sends to its two collections."""
    calls: list[str] = []
    for collection in (store._jobs, store._events):
        for method in ("insert_one", "insert_many", "update_one", "bulk_write"):
            original = getattr(collection, method)

            def counted(*args: Any, _name: str = method, _original: Callable[..., Any] = original, **kw: Any) -> Any:
                calls.append(_name)
                return _original(*args, **kw)

            monkeypatch.setattr(collection, method, counted)
    return calls


def test_a_batch_of_many_jobs_and_sources_is_one_insert_and_one_bulk_write(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(store, "a", "b", "c")
    calls = count_calls(monkeypatch, store)
    changes = [
        ReportChange(job, source, {}, {"n": i}, T0)
        for job in ("a", "b", "c")
        for i, source in enumerate([SERVER_SOURCE, *CLIENTS])
    ]
    # The same sources again: a second change of a source follows its first in the same batch.
    changes += [ReportChange(c.job_id, c.source, c.report, {"n": 10}, T0) for c in changes]
    events = store.append_report_changes(changes)
    assert sorted(calls) == ["bulk_write", "insert_many"]
    assert sequences(events) == [(j, s) for j in "abc" for s in range(2, 6)] + [
        (j, s) for j in "abc" for s in range(6, 10)
    ]
    for job in "abc":
        assert [e.sequence for e in store.read_events(job, 0)] == list(range(1, 10))
        for source in [SERVER_SOURCE, *CLIENTS]:
            assert report_of(store, job, source) == {"n": 10}


def test_an_oversize_change_between_good_ones_is_set_aside_alone(store: MongoStore) -> None:
    started(store, "a", "b")
    big = "x" * (MAX_DOCUMENT_BYTES + 1)
    results = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0),
            ReportChange("a", CLIENTS[0], {}, {"log": big}, T0),  # MongoDB refuses an event over 16 MiB
            ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 2}, T0),
            ReportChange("b", CLIENTS[1], {}, {"z": 1}, T0),
            ReportChange("a", CLIENTS[1], {}, {"w": 1}, T0),
        ]
    )
    assert isinstance(results[2], SetAside) and "too large" in results[2].reason
    assert sequences(results) == [("a", 2), ("b", 2), "set aside", ("a", 3), ("b", 3), ("a", 4)]
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3, 4]
    assert [e.sequence for e in store.read_events("b", 0)] == [1, 2, 3]
    assert report_of(store, "a", SERVER_SOURCE) == {"x": 2} and report_of(store, "a", CLIENTS[0]) == {}
    assert report_of(store, "a", CLIENTS[1]) == {"w": 1} and report_of(store, "b", CLIENTS[1]) == {"z": 1}
    # The source's next change (the caller kept its baseline) lands after the set-aside one.
    event = store.append_report_changes([ReportChange("a", CLIENTS[0], {}, {"log": "short"}, T0)])[0]
    assert isinstance(event, MetricsEvent) and event.sequence == 5


def test_an_event_the_server_refuses_is_set_aside_alone_and_the_rest_stays_batched(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(store, "a", "b")
    calls = count_calls(monkeypatch, store)
    insert_many = store._events.insert_many

    def server_refusing(docs: list[JsonObject], *args: Any, **kwargs: Any) -> Any:
        # What a server does with an ordered insert and an event it refuses (e.g. document validation).
        for index, doc in enumerate(docs):
            if "refuse me" in doc["patch"]:
                if index:
                    insert_many(docs[:index], *args, **kwargs)
                error = {"index": index, "code": 121, "errmsg": "Document failed validation"}
                raise BulkWriteError({"writeErrors": [error], "nInserted": index})
        return insert_many(docs, *args, **kwargs)

    monkeypatch.setattr(store._events, "insert_many", server_refusing)
    results = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0),
            ReportChange("a", CLIENTS[0], {}, {"note": "refuse me"}, T0),
            ReportChange("a", CLIENTS[1], {}, {"w": 1}, T0),
            ReportChange("b", CLIENTS[1], {}, {"z": 1}, T0),
        ]
    )
    assert isinstance(results[2], SetAside) and "failed validation" in results[2].reason
    assert sequences(results) == [("a", 2), ("b", 2), "set aside", ("a", 3), ("b", 3)]
    assert calls.count("insert_one") == 0  # no per-change appends: the server said which event it refused
    assert report_of(store, "a", CLIENTS[0]) == {} and report_of(store, "a", CLIENTS[1]) == {"w": 1}
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]


def test_a_batch_that_crashed_before_advancing_its_jobs_is_rolled_forward_by_the_next_append(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(store, "a", "b")

    def crash(*args: object, **kwargs: object) -> object:
        raise AutoReconnect("connection lost after the events were written")

    monkeypatch.setattr(store._jobs, "bulk_write", crash)
    with pytest.raises(Unavailable):
        store.append_report_changes(
            [
                ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
                ReportChange("a", CLIENTS[0], {}, {"y": 2}, T0),
                ReportChange("b", SERVER_SOURCE, {}, {"z": 3}, T0),
            ]
        )
    monkeypatch.undo()
    events = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 1, "w": 4}, T0),
            ReportChange("b", CLIENTS[1], {}, {"v": 5}, T0),
        ]
    )
    assert sequences(events) == [("a", 4), ("b", 3)]
    assert report_of(store, "a", SERVER_SOURCE) == {"x": 1, "w": 4} and report_of(store, "a", CLIENTS[0]) == {"y": 2}
    assert report_of(store, "b", SERVER_SOURCE) == {"z": 3} and report_of(store, "b", CLIENTS[1]) == {"v": 5}
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3, 4]


def test_a_batch_that_crashed_before_advancing_its_jobs_is_rolled_forward_by_the_next_read(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(store, "a")

    def crash(*args: object, **kwargs: object) -> object:
        raise AutoReconnect("connection lost after the events were written")

    monkeypatch.setattr(store._jobs, "bulk_write", crash)
    with pytest.raises(Unavailable):
        store.append_report_changes(
            [ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0), ReportChange("a", CLIENTS[0], {}, {"y": 2}, T0)]
        )
    monkeypatch.undo()
    job = store.get_job("a")
    assert job is not None and job.last_sequence == 3
    assert job.server_metrics == {"x": 1} and job.clients[0].metrics == {"y": 2}


def test_a_sequence_another_writer_took_is_retried_after_it(store: MongoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another replica on the same database (opened first: mongomock re-checks a partial index on existing jobs).
    other = MongoStore(store._client, "florist_test", batch_ingest=False)
    started(store, "a", "b")
    insert_many = store._events.insert_many
    raced: list[bool] = []

    def other_writer_first(docs: list[JsonObject], *args: Any, **kwargs: Any) -> Any:
        if not raced:  # between our read of the jobs and our insert, another writer appends to job b
            raced.append(True)
            assert other.append_report_changes([ReportChange("b", CLIENTS[2], {}, {"other": 1}, T0)])[0] is not None
        return insert_many(docs, *args, **kwargs)

    monkeypatch.setattr(store._events, "insert_many", other_writer_first)
    events = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0),
            ReportChange("b", CLIENTS[0], {}, {"z": 1}, T0),
            ReportChange("a", CLIENTS[0], {}, {"w": 1}, T0),
        ]
    )
    assert sequences(events) == [("a", 2), ("b", 3), ("b", 4), ("a", 3)]
    assert [(e.sequence, e.source) for e in store.read_events("b", 0)][1:] == [
        (2, CLIENTS[2]),
        (3, SERVER_SOURCE),
        (4, CLIENTS[0]),
    ]
    job = store.get_job("b")
    assert job is not None and job.last_sequence == 4
    assert report_of(store, "b", CLIENTS[2]) == {"other": 1} and report_of(store, "b", SERVER_SOURCE) == {"y": 1}
    assert report_of(store, "a", CLIENTS[0]) == {"w": 1}


def test_concurrent_batches_never_share_or_skip_a_sequence(store: MongoStore) -> None:
    started(store, "a", "b")

    def append(writer: int) -> None:
        for n in range(15):
            store.append_report_changes(
                [ReportChange(job, source, {}, {f"w{writer}": n}, T0) for job in "ab" for source in CLIENTS[:2]]
            )

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in "ab":
        assert [e.sequence for e in store.read_events(job, 0)] == list(range(1, 2 + 4 * 15 * 2))
        stored = store._jobs.find_one({"_id": job})
        assert stored is not None and stored["last_sequence"] == 1 + 4 * 15 * 2
