"""SqliteStore's tables: jobs (state and definition), reports (accumulated, one row per source), events (the log),
site_stops (stops sent to sites and not yet confirmed, by client uuid)."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    create_us INTEGER NOT NULL,
    start_us INTEGER,
    end_us INTEGER,
    state INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (create_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, create_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS reports (
    job_id TEXT NOT NULL,
    source TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, source)
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    time_us INTEGER NOT NULL,
    source_kind INTEGER NOT NULL,
    client_index INTEGER NOT NULL,
    client_uuid TEXT NOT NULL,
    patch TEXT NOT NULL,
    job_state INTEGER NOT NULL,
    PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_stops (
    client_uuid TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    job_id TEXT NOT NULL,
    client_index INTEGER NOT NULL
);
"""
