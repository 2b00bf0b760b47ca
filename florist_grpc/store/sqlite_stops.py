"""SqliteStore's unconfirmed stops: rows of `site_stops`, written with their job's client in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from florist_grpc.store import rules
from florist_grpc.store.base import SiteStops, UnconfirmedStop
from florist_grpc.store.sqlite_connections import SqliteConnections


class SqliteSiteStops(SiteStops):
    def __init__(
        self, connections: SqliteConnections, on_doc_change: Callable[[str], None] = lambda job_id: None
    ) -> None:
        """`on_doc_change(job_id)`: called inside the transaction that changes a job's document without logging a
        change (the store's snapshots forget the job: store/client_deltas.py)."""
        self._connections = connections
        self._on_doc_change = on_doc_change

    def record(self, stops: Sequence[UnconfirmedStop]) -> None:
        def run() -> None:
            with self._connections.write() as conn:
                for stop in stops:
                    conn.execute(
                        "INSERT OR REPLACE INTO site_stops (client_uuid, agent, job_id, client_index) "
                        "VALUES (?, ?, ?, ?)",
                        (stop.client_uuid, stop.agent, stop.job_id, stop.client_index),
                    )
                    self._on_doc_change(stop.job_id)
                    update_doc(conn, stop.job_id, rules.stop_unconfirmed_sets(stop.client_index, True))

        self._connections.guard(run)

    def pending(self) -> list[UnconfirmedStop]:
        def run() -> list[UnconfirmedStop]:
            rows = self._connections.connection().execute(
                "SELECT client_uuid, agent, job_id, client_index FROM site_stops ORDER BY job_id, client_index"
            )
            return [UnconfirmedStop(*row) for row in rows.fetchall()]

        return self._connections.guard(run)

    def settle(self, client_uuid: str, confirmed: bool) -> None:
        def run() -> None:
            with self._connections.write() as conn:
                row = conn.execute(
                    "SELECT job_id, client_index FROM site_stops WHERE client_uuid = ?", (client_uuid,)
                ).fetchone()
                if row is None:
                    return
                conn.execute("DELETE FROM site_stops WHERE client_uuid = ?", (client_uuid,))
                if confirmed:
                    self._on_doc_change(row[0])
                    update_doc(conn, row[0], rules.stop_unconfirmed_sets(row[1], False))

        self._connections.guard(run)


def update_doc(conn: sqlite3.Connection, job_id: str, sets: dict[str, Any]) -> bool:
    """Apply `sets` to the job's document inside the caller's transaction; whether the job is there to update (a
    deleted job: nothing to do)."""
    row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return False
    doc = json.loads(row[0])
    rules.apply_sets(doc, sets)
    conn.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), job_id))
    return True
