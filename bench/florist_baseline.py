"""The FLorist-style pipeline the design replaces, rebuilt here as the baseline (not a copy of FLorist's code):

- one listener thread and one Redis pub/sub connection per FL process (server or client);
- on every notification the whole report is re-read and the whole job document re-written;
- subscribers learn of changes by polling the job every second (FLorist's UI polled GET /job).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import redis

POLL_SECONDS = 1.0


class FloristStyleStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._conn().execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        self._conn().execute("PRAGMA journal_mode=WAL")
        self._conn().commit()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def create(self, job_id: str, sources: list[str]) -> None:
        doc: dict[str, dict[str, dict[str, object]]] = {"reports": {s: {} for s in sources}}
        self._conn().execute("INSERT INTO jobs VALUES (?, ?)", (job_id, json.dumps(doc)))

    def write_report(self, job_id: str, source: str, report: dict[str, object]) -> None:
        """Read the whole job, replace one report, write the whole job back (one transaction)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        (text,) = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        doc = json.loads(text)
        doc["reports"][source] = report
        conn.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), job_id))
        conn.execute("COMMIT")

    def read(self, job_id: str) -> dict[str, dict[str, object]]:
        (text,) = self._conn().execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        reports: dict[str, dict[str, object]] = json.loads(text)["reports"]
        return reports


class FloristStyleListeners:
    """A thread and a pub/sub connection per source, each GET-ting and re-writing on every message."""

    def __init__(self, redis_url: str, store: FloristStyleStore) -> None:
        self._redis_url = redis_url
        self._store = store
        self._stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def follow(self, job_id: str, source: str, uuid: str) -> None:
        subscribed = threading.Event()
        thread = threading.Thread(target=self._listen, args=(job_id, source, uuid, subscribed), daemon=True)
        thread.start()
        self.threads.append(thread)
        subscribed.wait(30)

    def _listen(self, job_id: str, source: str, uuid: str, subscribed: threading.Event) -> None:
        client = redis.Redis.from_url(self._redis_url)
        try:
            pubsub = client.pubsub()
            pubsub.subscribe(uuid)
            subscribed.set()
            while not self._stopped.is_set():
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is None:
                    continue
                raw = client.get(uuid)
                if raw is not None:
                    self._store.write_report(job_id, source, json.loads(raw))
        except Exception as exc:  # the baseline records what breaks instead of hiding it
            self.errors.append(repr(exc))
            subscribed.set()
        finally:
            client.close()

    def stop(self) -> None:
        self._stopped.set()
        for thread in self.threads:
            thread.join(5)


def poll_until(store: FloristStyleStore, job_id: str, source: str, key: str, value: object, deadline: float) -> float:
    """A FLorist-style subscriber: look at the job once a second until report[key] == value; when it saw it."""
    while time.time() < deadline:
        if store.read(job_id).get(source, {}).get(key) == value:
            return time.time()
        time.sleep(POLL_SECONDS)  # the baseline's polling interval, which is what is being measured
    return float("nan")
