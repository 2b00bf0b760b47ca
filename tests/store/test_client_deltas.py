"""A client's state change is logged as what changed, not the whole job (store/client_deltas.py): O(1) in the
job's clients. 100 clients' ends used to log 100 copies of a 100-client job. (That readers and listeners get the
same snapshots as before is the contract's: tests/store/contract_changes.py.)"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from florist_grpc.domain.model import ClientState, JobState
from florist_grpc.store.base import JobStore
from tests.store.test_store_contract import new_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLIENTS = 200


def end_three_clients(store: JobStore) -> None:
    store.create_job(new_job("big", clients=CLIENTS))
    store.transition("big", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    for i in range(3):
        store.set_client_state("big", i, ClientState.FAILED, "boom")


def test_sqlite_logs_a_clients_end_as_what_changed(tmp_path: Path) -> None:
    from florist_grpc.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "db")
    end_three_clients(store)
    with closing(sqlite3.connect(tmp_path / "db")) as conn:
        sizes = [n for (n,) in conn.execute("SELECT length(job) FROM changes ORDER BY revision")]
    store.close()
    assert min(sizes[:2]) > 50 * CLIENTS  # created, started: the whole job
    assert max(sizes[2:]) < 200, sizes[2:]  # each client's end


def test_mongo_logs_a_clients_end_as_what_changed() -> None:
    import mongomock

    from florist_grpc.store.mongo import MongoStore
    from florist_grpc.testing.mongomock_compat import patch_mongomock

    patch_mongomock()
    client: mongomock.MongoClient[dict[str, Any]] = mongomock.MongoClient()
    end_three_clients(MongoStore(client, "deltas"))
    sizes = [len(row["job"]) for row in client["deltas"]["changes"].find().sort("_id", 1)]
    assert min(sizes[:2]) > 50 * CLIENTS
    assert max(sizes[2:]) < 200, sizes[2:]
