"""SqliteStore's changes log: revisions are the rowids of `changes` (AUTOINCREMENT: never reused, also after old
changes are trimmed), taken inside the transaction of the change itself, so a change and its revision commit
together or not at all and the log has no gaps."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from florist_grpc.domain.model import ChangeType, Job, JobChange, JobState
from florist_grpc.store.change_feed import TRIM_EVERY
from florist_grpc.store.codec import snapshot_from_doc, snapshot_to_doc
from florist_grpc.store.rules import out_of_range


def current_revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return int(row[0]) if row else 0


def record(conn: sqlite3.Connection, job: Job, type_: ChangeType, previous: JobState, keep: int) -> JobChange:
    """Inside a write transaction: log the change `job` (as it is now) went through, give it the next revision,
    and stamp the job with it."""
    revision = current_revision(conn) + 1
    job = replace(job, revision=revision, server_metrics={}, clients=[replace(c, metrics={}) for c in job.clients])
    conn.execute(
        "INSERT INTO changes (revision, job_id, type, previous_state, job) VALUES (?, ?, ?, ?, ?)",
        (revision, job.id, int(type_), int(previous), json.dumps(snapshot_to_doc(job))),
    )
    if type_ is not ChangeType.DELETED:
        conn.execute("UPDATE jobs SET revision = ? WHERE id = ?", (revision, job.id))
    if revision % TRIM_EVERY == 0:
        conn.execute("DELETE FROM changes WHERE revision <= ?", (revision - keep,))
    return JobChange(revision, type_, job, previous)


def read(conn: sqlite3.Connection, after: int, limit: int) -> list[JobChange]:
    conn.execute("BEGIN")  # one snapshot: a trim between the range check and the read cannot open a gap
    try:
        current = current_revision(conn)
        first = conn.execute("SELECT min(revision) FROM changes").fetchone()[0]
        if (problem := out_of_range(after, current, first)) is not None:
            raise problem
        rows = conn.execute(
            "SELECT revision, job_id, type, previous_state, job FROM changes WHERE revision > ?"
            " ORDER BY revision LIMIT ?",
            (after, limit),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return [
        JobChange(revision, ChangeType(type_), snapshot_from_doc(job_id, json.loads(doc)), JobState(previous))
        for revision, job_id, type_, previous, doc in rows
    ]
