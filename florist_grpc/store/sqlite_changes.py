"""SqliteStore's changes log: revisions are the rowids of `changes` (AUTOINCREMENT: never reused, also after old
changes are trimmed), taken inside the transaction of the change itself, so a change and its revision commit
together or not at all and the log has no gaps."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from florist_grpc.domain.model import ChangeType, ClientState, Job, JobChange, JobState
from florist_grpc.store.change_feed import TRIM_EVERY
from florist_grpc.store.client_deltas import Logged, Rebuilder, Row, apply_delta, delta_doc, trim_cut
from florist_grpc.store.codec import snapshot_to_doc
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
    _trim(conn, revision, keep)
    return JobChange(revision, type_, job, previous)


def record_client(
    conn: sqlite3.Connection, logged: Logged, index: int, state: ClientState, error_message: str, keep: int
) -> JobChange:
    """Inside a write transaction: log a client's state change of the job `logged` last logged as a delta
    (store/client_deltas.py), O(1) in the number of clients."""
    revision = current_revision(conn) + 1
    last_sequence, current_round = conn.execute(
        "SELECT last_sequence, current_round FROM jobs WHERE id = ?", (logged.job.id,)
    ).fetchone()
    delta = delta_doc(index, state, error_message, last_sequence, current_round)
    conn.execute(
        "INSERT INTO changes (revision, job_id, type, previous_state, job, base) VALUES (?, ?, ?, ?, ?, ?)",
        (revision, logged.job.id, int(ChangeType.MODIFIED), int(logged.job.state), json.dumps(delta), logged.base),
    )
    conn.execute("UPDATE jobs SET revision = ? WHERE id = ?", (revision, logged.job.id))
    _trim(conn, revision, keep)
    return JobChange(revision, ChangeType.MODIFIED, apply_delta(logged.job, delta, revision), logged.job.state)


def _trim(conn: sqlite3.Connection, revision: int, keep: int) -> None:
    if revision % TRIM_EVERY:
        return

    def oldest_base_after(cut: int) -> int | None:
        found: int | None = conn.execute("SELECT min(base) FROM changes WHERE revision > ?", (cut,)).fetchone()[0]
        return found

    conn.execute("DELETE FROM changes WHERE revision <= ?", (trim_cut(revision, keep, oldest_base_after),))


def read(conn: sqlite3.Connection, after: int, limit: int) -> list[JobChange]:
    conn.execute("BEGIN")  # one snapshot: a trim between the range check and the read cannot open a gap
    try:
        current = current_revision(conn)
        first = conn.execute("SELECT min(revision) FROM changes").fetchone()[0]
        if (problem := out_of_range(after, current, first)) is not None:
            raise problem
        rows = conn.execute(
            "SELECT revision, job_id, type, previous_state, job, base FROM changes WHERE revision > ?"
            " ORDER BY revision LIMIT ?",
            (after, limit),
        ).fetchall()

        def chain(job_id: str, base: int, before: int) -> list[Row]:
            found = conn.execute(
                "SELECT revision, job_id, job, base FROM changes WHERE revision >= ? AND revision < ? AND job_id = ?"
                " ORDER BY revision",
                (base, before, job_id),
            ).fetchall()
            return [(r, j, json.loads(doc), b) for r, j, doc, b in found]

        rebuilt = Rebuilder(chain)
        return [
            JobChange(
                revision,
                ChangeType(type_),
                rebuilt.snapshot((revision, job_id, json.loads(doc), base)),
                JobState(previous),
            )
            for revision, job_id, type_, previous, doc, base in rows
        ]
    finally:
        conn.execute("COMMIT")
