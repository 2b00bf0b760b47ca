"""A tracker follower's backlog and its reachability, each said once.

The backlog holds job ids, not events: the hub's observer notes that a job has news, and the follower's thread
reads the events from the store, which keeps them all. So a tracker that is down for hours holds at most one
entry per job, whatever the jobs report meanwhile, and the reports' own path (listener, store, hub) never waits
for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


class Backlog:
    """Jobs with events the tracker has not read yet, in the order their news came."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._jobs: dict[str, None] = {}  # an ordered set
        self._stopped = False

    def add(self, job_ids: Iterable[str]) -> None:
        """Note news of these jobs (any thread; returns at once)."""
        with self._ready:
            for job_id in job_ids:
                self._jobs[job_id] = None
            self._ready.notify()

    def take(self) -> list[str] | None:
        """Every job with news, once there is some; None once stopped."""
        with self._ready:
            self._ready.wait_for(lambda: self._jobs or self._stopped)
            if self._stopped:
                return None
            jobs = list(self._jobs)
            self._jobs.clear()
            return jobs

    def __len__(self) -> int:
        with self._ready:
            return len(self._jobs)

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()


class Reachability:
    """Whether the tracker answers, with one WARNING when it stops answering and one when it answers again, and
    the backoff between attempts meanwhile (doubling up to BACKOFF_MAX_SECONDS)."""

    def __init__(self, title: str) -> None:
        self._title = title
        self.reachable = True
        self._backoff = BACKOFF_FIRST_SECONDS

    def failed(self, reason: str, waiting: int) -> float:
        """The tracker did not answer; how long to wait before the next attempt."""
        if self.reachable:
            self.reachable = False
            log.warning(
                "%s is unreachable (%s): %d job(s) wait for it, retried with backoff up to %.0f s; "
                "the jobs run on, and their events stay in the job store",
                self._title,
                reason,
                waiting,
                BACKOFF_MAX_SECONDS,
            )
            return self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)
        return self._backoff

    def answered(self) -> None:
        if not self.reachable:
            self.reachable = True
            log.warning("%s is reachable again: catching up with the jobs' events", self._title)
        self._backoff = BACKOFF_FIRST_SECONDS
