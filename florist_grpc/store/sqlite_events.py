"""SqliteStore's event log rows: appending one event, reading a job's events back."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent, Source
from florist_grpc.store.codec import event_from_row, to_micros


def append_event(
    conn: sqlite3.Connection,
    job_id: str,
    sequence: int,
    time: datetime,
    source: Source,
    patch: JsonObject,
    job_state: JobState,
    patch_text: str | None = None,
) -> MetricsEvent:
    """Inside a write transaction: the event, and the job's last_sequence moved to it. `patch_text`: the patch's
    JSON text when the caller has it already (its checks wrote it out)."""
    conn.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            sequence,
            to_micros(time),
            int(source.kind),
            source.client_index,
            source.client_uuid,
            json.dumps(patch) if patch_text is None else patch_text,
            int(job_state),
        ),
    )
    conn.execute("UPDATE jobs SET last_sequence = ? WHERE id = ?", (sequence, job_id))
    return MetricsEvent(job_id, sequence, time, source, patch, job_state)


def read_events(conn: sqlite3.Connection, job_id: str, after_sequence: int, limit: int) -> list[MetricsEvent]:
    rows = conn.execute(
        "SELECT sequence, time_us, source_kind, client_index, client_uuid, patch, job_state FROM events"
        " WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
        (job_id, after_sequence, limit),
    ).fetchall()
    return [event_from_row(job_id, s, t, k, i, u, json.loads(p), js) for s, t, k, i, u, p, js in rows]
