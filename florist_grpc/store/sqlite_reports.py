"""SqliteStore's report appends: a batch of report changes in one transaction, each merged in SQL with json_patch.

Split from store/sqlite.py. The caller holds the write transaction; this appends the events, merges the reports
and says which jobs' current round moved (a job-level change the caller records in the changes log).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent
from florist_grpc.store import rules
from florist_grpc.store.base import ReportChange, SetAside
from florist_grpc.store.sqlite_events import append_event

# Errors that belong to one statement's data (malformed JSON is a generic SQLITE_ERROR; a value over SQLite's
# length limit is SQLITE_TOOBIG), as opposed to the database being busy, locked, full or unreadable.
_DATA_ERRORS = {sqlite3.SQLITE_ERROR, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE}

Outcome = MetricsEvent | SetAside | None


def append_reports(
    conn: sqlite3.Connection, changes: Sequence[ReportChange], patches: Sequence[JsonObject]
) -> tuple[list[Outcome], dict[str, int]]:
    """Each change's outcome, and the jobs whose current round moved (job id -> round), already stored."""
    events: list[Outcome] = []
    last: dict[str, int | None] = {}
    rounds: dict[str, int] = {}  # job id -> current round as stored or moved in this batch
    moved: dict[str, int] = {}
    for change, patch in zip(changes, patches, strict=True):
        if not patch:
            events.append(None)
            continue
        if change.job_id not in last:
            row = conn.execute(
                "SELECT state, last_sequence, current_round FROM jobs WHERE id = ?", (change.job_id,)
            ).fetchone()
            running = row is not None and rules.accepts_reports(JobState(row[0]))
            last[change.job_id] = row[1] if running else None
            if running:
                rounds[change.job_id] = row[2]
        sequence = last[change.job_id]
        if sequence is None:
            events.append(None)
            continue
        text = rules.patch_text(patch)
        if not isinstance(text, str):
            events.append(text)
            continue
        refused = _merge_report(conn, change, text)
        if refused is not None:
            events.append(refused)
            continue
        last[change.job_id] = sequence + 1
        events.append(
            append_event(conn, change.job_id, sequence + 1, change.time, change.source, patch, JobState.IN_PROGRESS)
        )
        if (moved_to := rules.round_after(change.source, change.report, rounds[change.job_id])) is not None:
            rounds[change.job_id] = moved[change.job_id] = moved_to
    for job_id, round_ in moved.items():
        conn.execute("UPDATE jobs SET current_round = ? WHERE id = ?", (round_, job_id))
    return events, moved


_MERGED = (
    "UPDATE reports SET body = json_patch(body, ?) WHERE job_id = ? AND source = ?",
    "INSERT INTO reports (job_id, source, body) VALUES (?, ?, json_patch('{}', ?))",
)
_AS_TEXT = (
    "UPDATE reports SET body = ? WHERE job_id = ? AND source = ?",
    "INSERT INTO reports (job_id, source, body) VALUES (?, ?, ?)",
)


def _merge_report(conn: sqlite3.Connection, change: ReportChange, text: str) -> SetAside | None:
    """Merge the patch into the stored report; a change SQLite refuses (e.g. JSON its parser rejects) is undone
    alone (a savepoint) and set aside, while an outage (busy, I/O) still fails the whole batch."""
    conn.execute("SAVEPOINT report_change")
    try:
        # json_patch is RFC 7396 itself: the patch's nulls delete, objects merge, the rest replaces. The report's
        # own text, when the ingest has it, is stored as it is: merging would parse and write out the whole stored
        # report again, a cost that grows with every round (300 us a change at 200 rounds), for the same report.
        update, insert = _AS_TEXT if change.text is not None else _MERGED
        body = text if change.text is None else change.text
        updated = conn.execute(update, (body, change.job_id, change.source.key))
        if updated.rowcount == 0:
            conn.execute(insert, (change.job_id, change.source.key, body))
    except (sqlite3.OperationalError, sqlite3.DataError) as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _DATA_ERRORS:  # the primary code
            raise
        conn.execute("ROLLBACK TO report_change")
        conn.execute("RELEASE report_change")
        return SetAside(f"SQLite refused it: {exc}")
    conn.execute("RELEASE report_change")
    return None
