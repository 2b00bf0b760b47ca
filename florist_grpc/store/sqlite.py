"""SqliteStore: the embedded default. stdlib sqlite3 in WAL mode, one connection per thread.

Every write is one IMMEDIATE transaction, so the check-then-write of a state transition or of an event append
cannot interleave with another writer (thread or process). Accumulated reports are merged in SQL with SQLite's
json_patch (RFC 7396), so an update ships only the patch, not the whole report.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from florist_grpc.domain.model import (
    JOB_SOURCE,
    ClientState,
    Job,
    JobState,
    JsonObject,
    Launch,
    MetricsEvent,
    Source,
)
from florist_grpc.store import rules
from florist_grpc.store.base import JobStore, PageCursor, ReportChange, SetAside
from florist_grpc.store.codec import event_from_row, job_from_doc, job_to_doc, to_micros
from florist_grpc.store.sqlite_connections import SqliteConnections
from florist_grpc.store.sqlite_schema import SCHEMA

_JOB_COLUMNS = "id, doc, state, last_sequence, create_us, start_us, end_us"
# Errors that belong to one statement's data (malformed JSON is a generic SQLITE_ERROR; a value over SQLite's
# length limit is SQLITE_TOOBIG), as opposed to the database being busy, locked, full or unreadable.
_DATA_ERRORS = {sqlite3.SQLITE_ERROR, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE}


class SqliteStore(JobStore):
    def __init__(self, path: Path) -> None:
        self._connections = SqliteConnections(path)
        self._connection = self._connections.connection
        self._write = self._connections.write
        self._guard = self._connections.guard
        self._connection().executescript(SCHEMA)

    def ping(self) -> None:
        self._guard(lambda: self._connection().execute("SELECT 1").fetchone())

    def _reports(self, conn: sqlite3.Connection, job_id: str) -> dict[str, JsonObject]:
        rows = conn.execute("SELECT source, body FROM reports WHERE job_id = ?", (job_id,)).fetchall()
        return {source: json.loads(body) for source, body in rows}

    def _job(self, conn: sqlite3.Connection, row: tuple[str, str, int, int, int, int | None, int | None]) -> Job:
        job_id, doc, state, last_sequence, create_us, start_us, end_us = row
        return job_from_doc(
            job_id,
            json.loads(doc),
            state=state,
            last_sequence=last_sequence,
            create_us=create_us,
            start_us=start_us,
            end_us=end_us,
            reports=self._reports(conn, job_id),
        )

    def create_job(self, job: Job, request_id: str = "") -> Job:
        def run() -> Job:
            with self._write() as conn:
                if request_id:
                    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE request_id = ?", (request_id,))
                    if (existing := row.fetchone()) is not None:
                        return self._job(conn, existing)
                conn.execute(
                    "INSERT INTO jobs (id, request_id, create_us, state, doc) VALUES (?, ?, ?, ?, ?)",
                    (
                        job.id,
                        request_id or None,
                        to_micros(job.create_time),
                        int(job.state),
                        json.dumps(job_to_doc(job)),
                    ),
                )
            return job

        return self._guard(run)

    def get_job(self, job_id: str) -> Job | None:
        def run() -> Job | None:
            conn = self._connection()
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return self._job(conn, row) if row else None

        return self._guard(run)

    def list_jobs(self, page_size: int, after: PageCursor | None, state: JobState) -> list[Job]:
        def run() -> list[Job]:
            clauses: list[str] = []
            params: list[object] = []
            if state is not JobState.UNSPECIFIED:
                clauses.append("state = ?")
                params.append(int(state))
            if after is not None:
                clauses.append("(create_us < ? OR (create_us = ? AND id < ?))")
                us = to_micros(after.create_time)
                params += [us, us, after.job_id]
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            conn = self._connection()
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY create_us DESC, id DESC LIMIT ?",
                (*params, page_size),
            ).fetchall()
            return [self._job(conn, row) for row in rows]

        return self._guard(run)

    def delete_job(self, job_id: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    return False
                rules.check_deletable(job_id, JobState(row[0]))
                for table, column in (("events", "job_id"), ("reports", "job_id"), ("jobs", "id")):
                    conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (job_id,))
            return True

        return self._guard(run)

    def _append(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        sequence: int,
        time: datetime,
        source: Source,
        patch: JsonObject,
        job_state: JobState,
    ) -> MetricsEvent:
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                sequence,
                to_micros(time),
                int(source.kind),
                source.client_index,
                source.client_uuid,
                json.dumps(patch),
                int(job_state),
            ),
        )
        conn.execute("UPDATE jobs SET last_sequence = ? WHERE id = ?", (sequence, job_id))
        return MetricsEvent(job_id, sequence, time, source, patch, job_state)

    def transition(
        self,
        job_id: str,
        from_states: Collection[JobState],
        to_state: JobState,
        time: datetime,
        error_message: str = "",
    ) -> MetricsEvent | None:
        def run() -> MetricsEvent | None:
            with self._write() as conn:
                row = conn.execute("SELECT state, last_sequence, doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
                change = row and rules.state_change(JobState(row[0]), from_states, to_state, time, error_message)
                if not change:
                    return None
                doc = json.loads(row[2])
                sets = rules.settled_client_sets(doc["clients"], to_state)
                if error_message:
                    sets["error_message"] = error_message
                rules.apply_sets(doc, sets)
                conn.execute(
                    "UPDATE jobs SET state = ?, start_us = coalesce(?, start_us), end_us = coalesce(?, end_us),"
                    " doc = ? WHERE id = ?",
                    (int(change.state), change.start_us, change.end_us, json.dumps(doc), job_id),
                )
                return self._append(conn, job_id, row[1] + 1, time, JOB_SOURCE, change.patch, to_state)

        return self._guard(run)

    def append_report_changes(self, changes: Sequence[ReportChange]) -> list[MetricsEvent | SetAside | None]:
        patches = [c.merge_patch() for c in changes]

        def run() -> list[MetricsEvent | SetAside | None]:
            events: list[MetricsEvent | SetAside | None] = []
            with self._write() as conn:  # one transaction (and one fsync) for the whole batch
                last: dict[str, int | None] = {}
                for change, patch in zip(changes, patches, strict=True):
                    if not patch:
                        events.append(None)
                        continue
                    if change.job_id not in last:
                        row = conn.execute(
                            "SELECT state, last_sequence FROM jobs WHERE id = ?", (change.job_id,)
                        ).fetchone()
                        running = row is not None and rules.accepts_reports(JobState(row[0]))
                        last[change.job_id] = row[1] if running else None
                    sequence = last[change.job_id]
                    if sequence is None:
                        events.append(None)
                        continue
                    text = rules.patch_text(patch)
                    if not isinstance(text, str):
                        events.append(text)
                        continue
                    refused = self._merge_report(conn, change, text)
                    if refused is not None:
                        events.append(refused)
                        continue
                    last[change.job_id] = sequence + 1
                    events.append(
                        self._append(
                            conn, change.job_id, sequence + 1, change.time, change.source, patch, JobState.IN_PROGRESS
                        )
                    )
            return events

        if not any(patches):
            return [None] * len(changes)
        return self._guard(run)

    @staticmethod
    def _merge_report(conn: sqlite3.Connection, change: ReportChange, text: str) -> SetAside | None:
        """Merge the patch into the stored report; a change SQLite refuses (e.g. JSON its parser rejects) is
        undone alone (a savepoint) and set aside, while an outage (busy, I/O) still fails the whole batch."""
        conn.execute("SAVEPOINT report_change")
        try:
            # json_patch is RFC 7396 itself: the patch's nulls delete, objects merge, the rest replaces.
            updated = conn.execute(
                "UPDATE reports SET body = json_patch(body, ?) WHERE job_id = ? AND source = ?",
                (text, change.job_id, change.source.key),
            )
            if updated.rowcount == 0:
                conn.execute(
                    "INSERT INTO reports (job_id, source, body) VALUES (?, ?, json_patch('{}', ?))",
                    (change.job_id, change.source.key, text),
                )
        except (sqlite3.OperationalError, sqlite3.DataError) as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _DATA_ERRORS:  # the primary code
                raise
            conn.execute("ROLLBACK TO report_change")
            conn.execute("RELEASE report_change")
            return SetAside(f"SQLite refused it: {exc}")
        conn.execute("RELEASE report_change")
        return None

    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        def run() -> list[MetricsEvent]:
            rows = (
                self._connection()
                .execute(
                    "SELECT sequence, time_us, source_kind, client_index, client_uuid, patch, job_state FROM events"
                    " WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                    (job_id, after_sequence, limit),
                )
                .fetchall()
            )
            return [event_from_row(job_id, s, t, k, i, u, json.loads(p), js) for s, t, k, i, u, p, js in rows]

        return self._guard(run)

    def _update_doc(self, job_id: str, sets: dict[str, Any]) -> None:
        def run() -> None:
            with self._write() as conn:
                row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    return
                doc = json.loads(row[0])
                rules.apply_sets(doc, sets)
                conn.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), job_id))

        self._guard(run)

    def record_launch(self, job_id: str, launch: Launch) -> None:
        self._update_doc(job_id, rules.launch_sets(launch))

    def set_client_state(self, job_id: str, index: int, state: ClientState, error_message: str = "") -> None:
        self._update_doc(job_id, rules.client_state_sets(index, state, error_message))

    def jobs_in_state(self, state: JobState) -> list[Job]:
        def run() -> list[Job]:
            conn = self._connection()
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ?", (int(state),)).fetchall()
            return [self._job(conn, row) for row in rows]

        return self._guard(run)

    def count_jobs_by_state(self) -> dict[JobState, int]:
        def run() -> dict[JobState, int]:
            rows = self._connection().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
            return {JobState(state): count for state, count in rows}

        return self._guard(run)

    def close(self) -> None:
        self._connections.close()
