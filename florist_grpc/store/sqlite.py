"""SqliteStore: the embedded default. stdlib sqlite3 in WAL mode, one connection per thread.

Every write is one IMMEDIATE transaction, so the check-then-write of a state transition or of an event append
cannot interleave with another writer (thread or process). Accumulated reports are kept a row per member
(store/sqlite_members.py), so a change writes only the members it changed, not the whole report. A job-level
change takes its revision in the same transaction (store/sqlite_changes.py) and is handed to listeners right
after the commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from florist_grpc.domain.model import (
    JOB_SOURCE,
    ChangeType,
    ClientState,
    Job,
    JobChange,
    JobState,
    Launch,
    MetricsEvent,
)
from florist_grpc.store import rules, sqlite_changes
from florist_grpc.store.base import JobStore, PageCursor, ReportChange, SetAside
from florist_grpc.store.change_feed import KEEP_CHANGES, ChangeFeed
from florist_grpc.store.client_deltas import Snapshots
from florist_grpc.store.codec import job_from_doc, job_to_doc, to_micros
from florist_grpc.store.sqlite_connections import SqliteConnections
from florist_grpc.store.sqlite_events import append_event, read_events
from florist_grpc.store.sqlite_members import read_reports
from florist_grpc.store.sqlite_reports import Refused, append_reports
from florist_grpc.store.sqlite_schema import migrate
from florist_grpc.store.sqlite_stops import SqliteSiteStops, update_doc

_JOB_COLUMNS = "id, doc, state, last_sequence, create_us, start_us, end_us, revision, current_round, queue_us"
_Row = tuple[str, str, int, int, int, int | None, int | None, int, int, int | None]


class SqliteStore(JobStore):
    def __init__(self, path: Path, keep_changes: int = KEEP_CHANGES) -> None:
        """`keep_changes`: how many of the latest changes the changes log keeps at least."""
        self._connections = SqliteConnections(path)
        self._connection = self._connections.connection
        self._write = self._connections.write
        self._guard = self._connections.guard
        self._keep = keep_changes
        self._feed = ChangeFeed()
        migrate(self._connection())
        self._snapshots = Snapshots()  # the latest snapshot logged of each job (store/client_deltas.py)
        self.stops = SqliteSiteStops(self._connections, on_doc_change=self._snapshots.forget)

    def ping(self) -> None:
        self._guard(lambda: self._connection().execute("SELECT 1").fetchone())

    def _job(self, conn: sqlite3.Connection, row: _Row, reports: bool = True) -> Job:
        job_id, doc, state, last_sequence, create_us, start_us, end_us, revision, current_round, queue_us = row
        return job_from_doc(
            job_id,
            json.loads(doc),
            state=state,
            last_sequence=last_sequence,
            create_us=create_us,
            start_us=start_us,
            end_us=end_us,
            reports=read_reports(conn, job_id) if reports else {},
            revision=revision,
            current_round=current_round,
            queue_us=queue_us,
        )

    def _changed(
        self, conn: sqlite3.Connection, job_id: str, type_: ChangeType, previous: JobState | None = None
    ) -> JobChange:
        """Log the change the job went through in this transaction (as it is now, without its reports)."""
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job = self._job(conn, row, reports=False)
        change = sqlite_changes.record(conn, job, type_, job.state if previous is None else previous, self._keep)
        assert change.job is not None
        self._snapshots.logged_whole(change.job)
        return change

    def _changing(self, write: Callable[[sqlite3.Connection, list[JobChange]], Any]) -> Any:
        """Run `write` in one write transaction; the changes it logs are handed on once it committed."""

        def run() -> Any:
            with self._feed.ordered() as made, self._write() as conn:
                return write(conn, made)

        return self._guard(run)

    def create_job(self, job: Job, request_id: str = "") -> Job:
        def write(conn: sqlite3.Connection, made: list[JobChange]) -> Job:
            if request_id:
                row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE request_id = ?", (request_id,))
                if (existing := row.fetchone()) is not None:
                    return self._job(conn, existing)
            conn.execute(
                "INSERT INTO jobs (id, request_id, create_us, state, project, doc) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    request_id or None,
                    to_micros(job.create_time),
                    int(job.state),
                    job.project,
                    json.dumps(job_to_doc(job)),
                ),
            )
            made.append(self._changed(conn, job.id, ChangeType.ADDED, JobState.UNSPECIFIED))
            assert made[-1].job is not None
            return made[-1].job

        created: Job = self._changing(write)
        return created

    def get_job(self, job_id: str) -> Job | None:
        def run() -> Job | None:
            conn = self._connection()
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return self._job(conn, row) if row else None

        return self._guard(run)

    def list_jobs(
        self, page_size: int, after: PageCursor | None, state: JobState, projects: Collection[str] | None = None
    ) -> list[Job]:
        def run() -> list[Job]:
            clauses: list[str] = []
            params: list[object] = []
            if state is not JobState.UNSPECIFIED:
                clauses.append("state = ?")
                params.append(int(state))
            if projects is not None:
                clauses.append(f"project IN ({', '.join('?' * len(projects))})")
                params += sorted(projects)
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
        def write(conn: sqlite3.Connection, made: list[JobChange]) -> bool:
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            job = self._job(conn, row, reports=False)
            rules.check_deletable(job_id, job.state)
            for table, column in (("events", "job_id"), ("report_members", "job_id"), ("jobs", "id")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (job_id,))
            made.append(sqlite_changes.record(conn, job, ChangeType.DELETED, job.state, self._keep))
            self._snapshots.forget(job_id)
            return True

        deleted: bool = self._changing(write)
        return deleted

    def transition(
        self,
        job_id: str,
        from_states: Collection[JobState],
        to_state: JobState,
        time: datetime,
        error_message: str = "",
        reason: str = "",
    ) -> MetricsEvent | None:
        def write(conn: sqlite3.Connection, made: list[JobChange]) -> MetricsEvent | None:
            row = conn.execute("SELECT state, last_sequence, doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
            change = row and rules.state_change(JobState(row[0]), from_states, to_state, time, error_message, reason)
            if not change:
                return None
            doc = json.loads(row[2])
            sets = rules.settled_client_sets(doc["clients"], to_state)
            if error_message:
                sets["error_message"] = error_message
            rules.apply_sets(doc, sets)
            conn.execute(
                "UPDATE jobs SET state = ?, start_us = coalesce(?, start_us), end_us = coalesce(?, end_us),"
                " queue_us = coalesce(?, queue_us), doc = ? WHERE id = ?",
                (int(change.state), change.start_us, change.end_us, change.queue_us, json.dumps(doc), job_id),
            )
            event = append_event(conn, job_id, row[1] + 1, time, JOB_SOURCE, change.patch, to_state)
            made.append(self._changed(conn, job_id, ChangeType.MODIFIED, JobState(row[0])))
            return event

        event: MetricsEvent | None = self._changing(write)
        return event

    def append_report_changes(self, changes: Sequence[ReportChange]) -> list[MetricsEvent | SetAside | None]:
        patches = [c.merge_patch() for c in changes]
        refused: dict[int, SetAside] = {}  # changes SQLite refused: set aside when the batch is run again

        def write(conn: sqlite3.Connection, made: list[JobChange]) -> list[MetricsEvent | SetAside | None]:
            # One transaction (and one fsync) for the whole batch.
            events, moved = append_reports(conn, changes, patches, refused)
            made += [self._changed(conn, job_id, ChangeType.MODIFIED) for job_id in moved]
            return events

        if not any(patches):
            return [None] * len(changes)
        while True:  # at most once more per change: each run refuses a change not refused before, or commits
            try:
                events: list[MetricsEvent | SetAside | None] = self._changing(write)
                return events
            except Refused as refusal:  # rolled back: nothing of this run was written or handed on
                refused[refusal.index] = refusal.outcome

    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        return self._guard(lambda: read_events(self._connection(), job_id, after_sequence, limit))

    def _update_doc(self, job_id: str, sets: dict[str, Any]) -> None:
        def write(conn: sqlite3.Connection, made: list[JobChange]) -> None:
            if not update_doc(conn, job_id, sets):
                return
            made.append(self._changed(conn, job_id, ChangeType.MODIFIED))

        self._changing(write)

    def record_launch(self, job_id: str, launch: Launch) -> None:
        self._update_doc(job_id, rules.launch_sets(launch))

    def set_client_state(self, job_id: str, index: int, state: ClientState, error_message: str = "") -> None:
        # O(1) in the job's clients where the job's latest snapshot is known (store/client_deltas.py): the
        # document changes in place (SQLite's json_set), the change is logged as a delta.
        sets = rules.client_state_sets(index, state, error_message)
        paths = ", ".join(f"'$.clients[{index}].{path.rsplit('.', 1)[1]}', ?" for path in sets)

        def write(conn: sqlite3.Connection, made: list[JobChange]) -> None:
            row = conn.execute("SELECT revision FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            conn.execute(f"UPDATE jobs SET doc = json_set(doc, {paths}) WHERE id = ?", (*sets.values(), job_id))
            if (logged := self._snapshots.latest(job_id, row[0])) is None:
                made.append(self._changed(conn, job_id, ChangeType.MODIFIED))
                return
            made.append(sqlite_changes.record_client(conn, logged, index, state, error_message, self._keep))
            assert made[-1].job is not None
            self._snapshots.logged_delta(logged, made[-1].job)

        self._changing(write)

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

    def current_revision(self) -> int:
        return self._guard(lambda: sqlite_changes.current_revision(self._connection()))

    def read_changes(self, after_revision: int, limit: int = 1000) -> list[JobChange]:
        return self._guard(lambda: sqlite_changes.read(self._connection(), after_revision, limit))

    def on_change(self, listener: Callable[[JobChange], None]) -> None:
        self._feed.subscribe(listener)

    def close(self) -> None:
        self._connections.close()
