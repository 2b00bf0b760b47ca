"""Reading the reports of followed sources: which were notified and not read yet, which wait for a retry, and what
each one last persisted.

Notifications arrive from the listener's thread; every read runs on one thread, the one `start` is given (the job
follower's). There, reads are ordered with the process exits and job endings handled on the same thread: a job's
last reports are read and persisted before its terminal event, so a terminal event is always a job's last one.
A read goes through the read throttle (metrics/throttle.py) and the ingest (metrics/ingest.py), which persists
what changed and publishes it. A source whose report is set aside gets one notice in its job's events until a
report of it is stored again; a job whose history is full (metrics/report_bounds.py) is handed to `refused`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import JsonObject, Source
from florist_grpc.metrics.ingest import ReportIngest
from florist_grpc.metrics.report_bounds import HistoryFull
from florist_grpc.metrics.throttle import ReadThrottle
from florist_grpc.store.base import SetAside

log = logging.getLogger(__name__)

# A read of Redis or the store that failed is tried again after this long.
RETRY_SECONDS = 0.5


@dataclass
class FollowedSource:
    job_id: str
    source: Source
    persisted: JsonObject  # its last persisted report: the baseline of its next change
    set_aside: bool = False  # its latest report was set aside, and its job was told so


class ReportReader:
    """Reads and persists the reports of the sources it follows. `notify` may be called from any thread, every
    other method only from the thread `start` was given."""

    def __init__(self, ingest: ReportIngest, throttle: ReadThrottle, retry_seconds: float = RETRY_SECONDS) -> None:
        self._ingest = ingest
        self._throttle = throttle
        self._retry_seconds = retry_seconds
        self._run_on: Callable[[Callable[[], None]], None] | None = None
        self._sources: dict[str, FollowedSource] = {}  # by run uuid
        # Notified uuids not read yet: one scheduled read takes them all (coalesces bursts of notifications).
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._retry: dict[str, float] = {}  # uuid -> when to read it again after a failure
        self._refused: dict[str, str] = {}  # job id -> why its report changes are refused (history full)
        self._on_refused: Callable[[str], None] = lambda job_id: None

    def start(
        self, run_on: Callable[[Callable[[], None]], None], refused: Callable[[str], None] = lambda job_id: None
    ) -> None:
        """From now on reads are handed to `run_on`, which runs them in order on the thread that owns this reader.
        `refused(job_id)` is called on that thread when a job's report changes start being refused."""
        self._run_on = run_on
        self._on_refused = refused

    def close(self) -> None:
        self._ingest.close()

    # --- any thread ---------------------------------------------------------------------------------------------

    def notify(self, uuid: str) -> None:
        """The source `uuid` reported (or may have): read it soon, on the owning thread."""
        if self._throttle.deferred(uuid):
            # Its deferred read is released (and reads Redis) after this notification's SET: nothing to wake for.
            return
        with self._pending_lock:
            schedule = not self._pending
            self._pending.add(uuid)
        if schedule:
            assert self._run_on is not None, "notified before start()"
            self._run_on(self._read_pending)

    # --- the owning thread --------------------------------------------------------------------------------------

    def follow(self, job_id: str, source: Source, uuid: str, persisted: JsonObject) -> None:
        """Read `uuid`'s reports as `source` of the job, whose last persisted report is `persisted`. A source with
        no run uuid has nothing to read."""
        if uuid:
            self._sources[uuid] = FollowedSource(job_id, source, persisted)

    def forget(self, uuids: Iterable[str]) -> None:
        """Stop reading these sources; a late notification of one of them reads nothing."""
        uuids = list(uuids)
        jobs = set()
        for uuid in uuids:
            if (followed := self._sources.pop(uuid, None)) is not None:
                jobs.add(followed.job_id)
            self._retry.pop(uuid, None)
        self._throttle.forget(uuids)
        self._ingest.forget_sources(uuids)
        for job_id in jobs - {s.job_id for s in self._sources.values()}:
            self._refused.pop(job_id, None)
            self._ingest.forget_job(job_id)

    def persisted(self, uuid: str) -> JsonObject:
        """The last report of `uuid` that was persisted ({} if none, or not followed)."""
        followed = self._sources.get(uuid)
        return followed.persisted if followed is not None else {}

    def refusal(self, job_id: str) -> str:
        """Why the job's report changes are refused (its stored history is full), or ''."""
        return self._refused.get(job_id, "")

    def read(self, uuids: Iterable[str]) -> bool:
        """Read these sources now (no throttle) and persist what they reported since their last events. False if
        Redis or the store failed: they are read again after the retry interval."""
        targets = [(uuid, self._sources[uuid]) for uuid in uuids if uuid in self._sources]
        if not targets:
            return True
        try:
            outcomes = self._ingest.sync([(s.job_id, s.source, uuid, s.persisted) for uuid, s in targets])
        except (redis.RedisError, OSError, Unavailable) as exc:
            log.warning("reading %d report(s) failed (%s); retrying", len(targets), exc)
            for uuid, _ in targets:
                self._retry[uuid] = time.monotonic() + self._retry_seconds
            return False
        # Only what was persisted becomes a baseline: a job's end is judged from persisted reports alone.
        notices: list[tuple[FollowedSource, str]] = []  # (source, why its report was set aside)
        refused: list[str] = []
        for (uuid, followed), outcome in zip(targets, outcomes, strict=True):
            self._retry.pop(uuid, None)
            if isinstance(outcome, SetAside):
                if not followed.set_aside:
                    followed.set_aside = True
                    notices.append((followed, outcome.reason))
            elif isinstance(outcome, HistoryFull):
                if followed.job_id not in self._refused:
                    self._refused[followed.job_id] = outcome.message
                    refused.append(followed.job_id)
            elif outcome is not None:
                followed.persisted = outcome
                followed.set_aside = False
        if notices:
            self._notice(notices)
        for job_id in refused:
            self._on_refused(job_id)
        return True

    def _notice(self, notices: list[tuple[FollowedSource, str]]) -> None:
        try:
            self._ingest.notice([(s.job_id, s.source, reason) for s, reason in notices])
        except (redis.RedisError, OSError, Unavailable) as exc:
            log.warning("telling jobs of %d set-aside report(s) failed (%s); told at the next", len(notices), exc)
            for followed, _ in notices:
                followed.set_aside = False

    def next_due(self) -> float | None:
        """When the earliest deferred read (throttled, or waiting for a retry) becomes due; None if there is none."""
        times = [t for t in (self._throttle.next_due(), min(self._retry.values(), default=None)) if t is not None]
        return min(times, default=None)

    def release_due(self, now: float) -> None:
        """Schedule the deferred reads whose time has come."""
        due = self._throttle.release_due(now)
        for uuid, when in list(self._retry.items()):
            if when <= now:
                del self._retry[uuid]
                due.append(uuid)
        for uuid in due:
            self.notify(uuid)

    def _read_pending(self) -> None:
        with self._pending_lock:
            uuids, self._pending = self._pending, set()
        now = time.monotonic()
        admitted = []
        for uuid in uuids:
            followed = self._sources.get(uuid)
            if followed is None:
                continue  # a late notification of a source no longer followed: nothing to read or remember
            if self._throttle.admit(uuid, followed.job_id, now):
                admitted.append(uuid)
        self.read(admitted)
