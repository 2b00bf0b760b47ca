"""MongoStore's batch ingest where the server has transactions (replica set, mongos): both writes commit
together, so an abort leaves nothing and the whole batch is retried. mongomock has no sessions: the transaction
here is a fake that undoes what its callback wrote when it raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import SERVER_SOURCE, JsonObject
from florist_grpc.store.base import ReportChange
from florist_grpc.store.mongo import MongoStore
from florist_grpc.testing.mongomock_compat import MAX_DOCUMENT_BYTES
from tests.store.test_mongo_batch import CLIENTS, mongo_store, sequences, started
from tests.store.test_store_contract import T0, report_of

# --- where the server has transactions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "transactions"),
    [({"isWritablePrimary": True}, False), ({"setName": "rs0"}, True), ({"msg": "isdbgrid"}, True)],
)
def test_transactions_are_used_on_a_replica_set_or_mongos_only(
    monkeypatch: pytest.MonkeyPatch, hello: JsonObject, transactions: bool
) -> None:
    from mongomock.database import Database

    monkeypatch.setattr(Database, "command", lambda self, name, *args, **kwargs: hello)
    store = mongo_store()
    assert (store._batch._start_session is not None) is transactions


class FakeTransaction:
    """mongomock has no sessions: a transaction that undoes both collections when its callback raises, as an
    aborted MongoDB transaction leaves nothing behind, and counts its commits."""

    def __init__(self, store: MongoStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.commits = 0
        self.writes = 0  # made in this transaction
        self.before_first: Callable[[], None] | None = None  # what another writer does before it starts
        self.originals = {id(c): (c.insert_many, c.delete_many) for c in (store._jobs, store._events)}
        for collection in (store._jobs, store._events):
            for method in ("insert_many", "bulk_write", "update_one"):
                original = getattr(collection, method)

                def without_session(*args: Any, _original: Callable[..., Any] = original, **kw: Any) -> Any:
                    if kw.pop("session", None) is self:
                        self.writes += 1
                    return _original(*args, **kw)

                monkeypatch.setattr(collection, method, without_session)
        monkeypatch.setattr(store._batch, "_start_session", lambda: self)

    def __enter__(self) -> FakeTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def with_transaction(self, callback: Callable[[FakeTransaction], None]) -> None:
        if self.before_first is not None:
            self.before_first()
            self.before_first = None
        saved = [(c, list(c.find())) for c in (self.store._jobs, self.store._events)]
        try:
            callback(self)
        except Exception:
            for collection, rows in saved:
                insert_many, delete_many = self.originals[id(collection)]
                delete_many({})
                if rows:
                    insert_many(rows)
            raise
        self.commits += 1


def test_in_a_transaction_a_taken_sequence_aborts_the_batch_which_is_retried_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = mongo_store()
    other = MongoStore(store._client, "florist_test", batch_ingest=False)
    started(store, "a", "b")
    transaction = FakeTransaction(store, monkeypatch)

    def other_writer_first() -> None:  # after our read of the jobs, before our transaction
        assert other.append_report_changes([ReportChange("b", CLIENTS[2], {}, {"other": 1}, T0)])[0] is not None

    transaction.before_first = other_writer_first
    events = store.append_report_changes(
        [ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0), ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0)]
    )
    assert sequences(events) == [("a", 2), ("b", 3)] and transaction.commits == 1 and transaction.writes > 0
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2]
    assert report_of(store, "b", CLIENTS[2]) == {"other": 1} and report_of(store, "b", SERVER_SOURCE) == {"y": 1}


def test_in_a_transaction_a_refused_change_is_set_aside_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    store = mongo_store()
    started(store, "a")
    FakeTransaction(store, monkeypatch)
    results = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("a", CLIENTS[0], {}, {"log": "x" * (MAX_DOCUMENT_BYTES + 1)}, T0),
            ReportChange("a", CLIENTS[1], {}, {"w": 1}, T0),
        ]
    )
    assert sequences(results) == [("a", 2), "set aside", ("a", 3)]
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]
    assert report_of(store, "a", SERVER_SOURCE) == {"x": 1} and report_of(store, "a", CLIENTS[1]) == {"w": 1}


def test_in_a_transaction_a_job_update_the_server_refuses_writes_nothing_and_is_an_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = mongo_store()
    started(store, "a", "b")
    FakeTransaction(store, monkeypatch)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        error = {"index": 0, "code": 10334, "errmsg": "BSONObj size is invalid"}  # its index is an update's
        raise BulkWriteError({"writeErrors": [error], "nInserted": 0})

    monkeypatch.setattr(store._jobs, "bulk_write", refuse)
    with pytest.raises(Unavailable):
        store.append_report_changes(
            [ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0), ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0)]
        )
    assert [e.sequence for e in store.read_events("a", 0)] == [1] and report_of(store, "a", SERVER_SOURCE) == {}
