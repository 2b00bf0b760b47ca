"""SqliteStore's tables: jobs (state and definition), report_members (accumulated reports, a row per member:
store/sqlite_members.py), events (a job's log), changes (the store-wide log of job changes, by revision),
site_stops (stops sent to sites and not yet confirmed, by client uuid).

A database written by an earlier version is brought up to date in place (`migrate`): columns added since are
added with the value every older job has, and reports kept whole (a row per source) are split into members.
"""

from __future__ import annotations

import sqlite3

from florist_grpc.store.sqlite_members import SCHEMA as MEMBERS_SCHEMA
from florist_grpc.store.sqlite_members import migrate_whole_reports

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
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    type INTEGER NOT NULL,
    previous_state INTEGER NOT NULL,
    job TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS site_stops (
    client_uuid TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    job_id TEXT NOT NULL,
    client_index INTEGER NOT NULL
);
"""

# Columns of `jobs` added after its first version: name -> definition (older rows take the default).
ADDED_JOB_COLUMNS = {
    "project": "TEXT NOT NULL DEFAULT 'default'",
    "revision": "INTEGER NOT NULL DEFAULT 0",
    "current_round": "INTEGER NOT NULL DEFAULT 0",
    "queue_us": "INTEGER",
}

# Columns of `changes` added since: a client's state change logged as a delta of the job's change `base`
# (store/client_deltas.py); NULL = the change holds the whole job, as every older one does.
ADDED_CHANGE_COLUMNS = {"base": "INTEGER"}

INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (create_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, create_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs (project, create_us DESC, id DESC);
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, add the columns an older database lacks, then the indexes (some are on new columns)."""
    conn.executescript(SCHEMA + MEMBERS_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, added in (("jobs", ADDED_JOB_COLUMNS), ("changes", ADDED_CHANGE_COLUMNS)):
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, definition in added.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        migrate_whole_reports(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    conn.executescript(INDEXES)
