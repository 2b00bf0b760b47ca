"""SqliteStore's report appends: a batch of report changes in one transaction, each written as the members it
changes (store/sqlite_members.py).

Split from store/sqlite.py. The caller holds the write transaction; this appends the events, merges the reports
and says which jobs' current round moved (a job-level change the caller records in the changes log). A change
SQLite refuses (`Refused`) fails the transaction: the caller rolls it back and runs the batch again with that
change set aside, which costs a batch twice in the rare case instead of a savepoint around every change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent, SourceKind
from florist_grpc.domain.report_layout import ROUNDS, server_round_finished
from florist_grpc.store import rules
from florist_grpc.store.base import ReportChange, SetAside
from florist_grpc.store.sqlite_events import append_event
from florist_grpc.store.sqlite_members import write_change

# Errors that belong to one statement's data (malformed JSON is a generic SQLITE_ERROR; a value over SQLite's
# length limit is SQLITE_TOOBIG), as opposed to the database being busy, locked, full or unreadable.
_DATA_ERRORS = {sqlite3.SQLITE_ERROR, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE}

Outcome = MetricsEvent | SetAside | None


class Refused(Exception):
    """SQLite refused the data of the batch's change at `index` (e.g. a stored body its JSON parser rejects): roll
    the transaction back and append the batch again with that change set aside."""

    def __init__(self, index: int, outcome: SetAside) -> None:
        super().__init__(outcome.reason)
        self.index = index
        self.outcome = outcome


def append_reports(
    conn: sqlite3.Connection,
    changes: Sequence[ReportChange],
    patches: Sequence[JsonObject],
    refused: dict[int, SetAside],
) -> tuple[list[Outcome], dict[str, int]]:
    """Each change's outcome, and the jobs whose current round moved (job id -> round), already stored. The
    changes at the indices of `refused` are set aside unwritten. Raises Refused."""
    events: list[Outcome] = []
    last: dict[str, int | None] = {}
    rounds: dict[str, int] = {}  # job id -> current round as stored or moved in this batch
    moved: dict[str, int] = {}
    for index, (change, patch) in enumerate(zip(changes, patches, strict=True)):
        if not patch or index in refused:
            events.append(refused.get(index))
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
        _merge_report(conn, index, change, patch)
        last[change.job_id] = sequence + 1
        events.append(
            append_event(
                conn, change.job_id, sequence + 1, change.time, change.source, patch, JobState.IN_PROGRESS, text
            )
        )
        if (moved_to := _round_after(change, patch, rounds[change.job_id])) is not None:
            rounds[change.job_id] = moved[change.job_id] = moved_to
    for job_id, round_ in moved.items():
        conn.execute("UPDATE jobs SET current_round = ? WHERE id = ?", (round_, job_id))
    return events, moved


def _round_after(change: ReportChange, patch: JsonObject, stored: int) -> int | None:
    """rules.round_after, from the rounds the patch names when it can: the current round is counted from the
    server's `rounds` alone, so a patch that leaves them alone leaves it, and one that only adds to or changes
    rounds other than the current one moves it to the last of them that is finished, if that is later. Counting
    every round of the report on each change of the server cost ~25 us at 50 rounds, 100 at 200."""
    if change.source.kind is not SourceKind.SERVER or ROUNDS not in patch:
        return None
    named, rounds = patch[ROUNDS], change.report.get(ROUNDS)
    if not isinstance(named, dict) or not isinstance(rounds, dict) or any(_number(n) == stored for n in named):
        return rules.round_after(change.source, change.report, stored)  # the current one may be undone: count all
    finished = [k for n in named if (k := _number(n)) is not None and _finished(rounds.get(n))]
    later = max(finished, default=stored)
    return later if later > stored else None


def _number(key: str) -> int | None:
    return int(key) if key.isdigit() else None


def _finished(data: object) -> bool:
    return isinstance(data, dict) and server_round_finished(data)


def _merge_report(conn: sqlite3.Connection, index: int, change: ReportChange, patch: JsonObject) -> None:
    """Merge the patch into the stored report, member by member. Raises Refused for a change SQLite refuses (a
    value over its length limit) or JSON cannot hold, while an outage (busy, I/O) still fails the whole batch."""
    try:
        write_change(conn, change.job_id, change.source.key, change.previous, change.report, patch)
    except (ValueError, RecursionError) as exc:
        raise Refused(index, SetAside(f"not storable as JSON: {exc}")) from exc
    except (sqlite3.OperationalError, sqlite3.DataError) as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _DATA_ERRORS:  # the primary code
            raise
        raise Refused(index, SetAside(f"SQLite refused it: {exc}")) from exc
