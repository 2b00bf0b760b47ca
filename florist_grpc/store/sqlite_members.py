"""SqliteStore's reports, a row per member: a change writes what it changed, not the whole report.

A source's report is a JSON object. Each of its top-level members is a row (depth 0); a member whose value is an
object is a row holding `{}` and a row per member of it (depth 1), so each round of a report's `rounds` is a row
of its own. A change is a merge patch (RFC 7396): a top-level member it sets to a non-object is rewritten, one it
deletes is deleted with its members, and one it merges into has only the members it names rewritten (from the
new report, whole) or deleted. A change to round 200 writes round 200's row, where a row per report rewrote the
whole report (123 KB at 200 rounds) into the WAL on every change.

Reading assembles the rows in the order they were first written (rowid), as a dict keeps its keys: a member
rewritten keeps its place, a new one comes last.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

from florist_grpc.domain.model import JsonObject

SCHEMA = """
CREATE TABLE IF NOT EXISTS report_members (
    job_id TEXT NOT NULL,
    source TEXT NOT NULL,
    member TEXT NOT NULL,
    depth INTEGER NOT NULL,
    part TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (job_id, source, member, depth, part)
);
"""

_UPSERT = (
    "INSERT INTO report_members (job_id, source, member, depth, part, body) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (job_id, source, member, depth, part) DO UPDATE SET body = excluded.body"
)
_DELETE_MEMBER = "DELETE FROM report_members WHERE job_id = ? AND source = ? AND member = ?"
_DELETE_PARTS = "DELETE FROM report_members WHERE job_id = ? AND source = ? AND member = ? AND depth = 1"
_DELETE_PART = "DELETE FROM report_members WHERE job_id = ? AND source = ? AND member = ? AND depth = 1 AND part = ?"


def write_change(
    conn: sqlite3.Connection, job_id: str, source: str, previous: JsonObject, report: JsonObject, patch: JsonObject
) -> None:
    """Store `patch`, the change from `previous` (the stored report) to `report`. Raises ValueError for a value
    JSON cannot hold (NaN, Infinity), RecursionError for one nested too deep, sqlite3 errors as they come."""
    for member, change in patch.items():
        key = (job_id, source, member)
        if change is None:
            conn.execute(_DELETE_MEMBER, key)
        elif isinstance(change, dict):
            value = report[member]
            if not isinstance(previous.get(member), dict):  # it becomes an object now: its row says so
                conn.execute(_UPSERT, (*key, 0, "", "{}"))
            for part, part_change in change.items():
                if part_change is None:
                    conn.execute(_DELETE_PART, (*key, part))
                else:
                    conn.execute(_UPSERT, (*key, 1, part, _text(value[part])))
        else:
            if member not in previous or isinstance(previous[member], dict):  # it may have had members
                conn.execute(_DELETE_PARTS, key)
            conn.execute(_UPSERT, (*key, 0, "", _text(report[member])))


def read_reports(conn: sqlite3.Connection, job_id: str) -> dict[str, JsonObject]:
    """The job's stored reports by source. Each report's rows are joined into its JSON text, parsed once (json's C
    parser), rather than parsed a row at a time: a report of 200 rounds is 200 rows."""
    rows = conn.execute(
        "SELECT source, member, depth, part, body FROM report_members WHERE job_id = ? ORDER BY rowid", (job_id,)
    )
    texts: defaultdict[str, dict[str, _Member]] = defaultdict(dict)
    for source, member, depth, part, body in rows:
        report = texts[source]
        if (held := report.get(member)) is None:
            held = report[member] = _Member()
        if depth == 0:
            held.body = body
        else:
            held.parts.append(f"{_quote(part)}:{body}")
    return {
        source: json.loads(f"{{{','.join(_joined(m, h) for m, h in report.items())}}}")
        for source, report in texts.items()
    }


class _Member:
    """A member's rows: its own body, and its members' `"key":value` texts when it is an object."""

    __slots__ = ("body", "parts")

    def __init__(self) -> None:
        self.body = "{}"  # its object row was written first, always: a member with parts and no row is one
        self.parts: list[str] = []


def _joined(member: str, held: _Member) -> str:
    value = f"{{{','.join(held.parts)}}}" if held.parts else held.body
    return f"{_quote(member)}:{value}"


def migrate_whole_reports(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: move the reports an earlier version kept whole (a row per source, `reports`)
    to rows per member, and drop that table."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reports'").fetchone() is None:
        return
    for job_id, source, body in conn.execute("SELECT job_id, source, body FROM reports").fetchall():
        report = json.loads(body)
        for member, value in report.items() if isinstance(report, dict) else ():
            key = (job_id, source, member)
            if isinstance(value, dict):
                conn.execute(_UPSERT, (*key, 0, "", "{}"))
                for part, item in value.items():
                    conn.execute(_UPSERT, (*key, 1, part, json.dumps(item)))
            else:
                conn.execute(_UPSERT, (*key, 0, "", json.dumps(value)))
    conn.execute("DROP TABLE reports")


_quote = json.JSONEncoder().encode  # a key as JSON text (escaped: what json.loads reads back as the same key)


def _text(value: object) -> str:
    return json.dumps(value, allow_nan=False)
