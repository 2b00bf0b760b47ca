"""How often a source's report is read: at most every `min_interval`, longer for jobs with many subscribers and
when many sources report at once.

Reports are whole snapshots, so a source reporting faster than it is read is coalesced: no event is lost, only
intermediate snapshots. Two costs are bounded this way, each by its own term of the interval:
- fan-out: every subscriber gets at most ~100 events/s per source however fast it reports, fewer for a job with
  more than 100 subscribers (the messages a job fans out per second stay around 10k/s);
- following: the sources reporting, across all jobs (read again within the last second), share one budget of ~100
  reads/s (1 / `min_interval`): one source alone is read every `min_interval`, three every 3 x, a hundred every second.
  Beyond ~100, a source read less often than once a second stops counting, so the count settles near 10 x
  sqrt(sources): 1,000 sources are read every ~3 s each, ~300 reads/s in all, and no source waits without bound.
  A read costs the control plane ~1 ms of CPU across three threads (docs/benchmarks.md), taken from the FL
  processes it follows when they share its cores.
A source reporting slower than its interval is never delayed. A notification that comes too early is deferred,
never dropped; a process's exit and a job's end read at once, whatever the interval.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

# Beyond this many subscribers of a job, the interval grows in proportion, so that the messages a job fans out
# per second stay bounded (~10k/s): 1,000 watchers of one job get ~10 events/s per source instead of 100.
SUBSCRIBERS_PER_MIN_INTERVAL = 100
# A source counts against the read budget while it was read again within this window. Its first read says nothing
# of its pace: every followed source is read once when it is subscribed to, and most of a job's are then quiet.
# (A resubscription after a lost Redis connection reads every source again: for a second they all count.)
REPORTING_WINDOW_SECONDS = 1.0


class ReadThrottle:
    """Not thread-safe, but for `deferred`: owned by the follower thread. Times are time.monotonic() values."""

    def __init__(self, subscribers: Callable[[str], int], min_interval: float) -> None:
        """`min_interval`: Timeouts.report_read_interval_seconds, 10 ms unless configured."""
        self._subscribers = subscribers
        self._min_interval = min_interval
        self._last_read: dict[str, float] = {}  # uuid -> when it was last admitted
        # uuid -> when it was last admitted, if not for the first time, oldest first; pruned to the window, so its
        # length is the count of sources reporting (O(1) an admit, however many sources are followed).
        self._read_again: OrderedDict[str, float] = OrderedDict()
        self._deferred: dict[str, float] = {}  # uuid -> when it may be read again

    def admit(self, uuid: str, job_id: str, now: float) -> bool:
        """True if `uuid` may be read now (and counts as read); else it is deferred until it may."""
        last = self._last_read.get(uuid)
        if last is not None:
            horizon = now - REPORTING_WINDOW_SECONDS
            while self._read_again and next(iter(self._read_again.values())) <= horizon:
                self._read_again.popitem(last=False)
            fan_out = self._subscribers(job_id) / SUBSCRIBERS_PER_MIN_INTERVAL
            due = last + self._min_interval * max(1.0, fan_out, len(self._read_again))
            if due > now:
                self._deferred[uuid] = min(due, self._deferred.get(uuid, due))
                return False
            self._read_again[uuid] = now
            self._read_again.move_to_end(uuid)
        self._last_read[uuid] = now
        self._deferred.pop(uuid, None)  # read now: a read deferred earlier would find nothing new
        return True

    def deferred(self, uuid: str) -> bool:
        """Whether a read of `uuid` is already due later. The one method safe from any thread: a notification
        that finds its source deferred needs no read of its own, since the deferred read comes after it."""
        return uuid in self._deferred

    def next_due(self) -> float | None:
        """When the earliest deferred read becomes due (None if nothing is deferred)."""
        return min(self._deferred.values()) if self._deferred else None

    def release_due(self, now: float) -> list[str]:
        """The deferred uuids whose time has come; they are no longer deferred."""
        due = [uuid for uuid, when in self._deferred.items() if when <= now]
        for uuid in due:
            del self._deferred[uuid]
        return due

    def forget(self, uuids: Iterable[str]) -> None:
        for uuid in uuids:
            self._deferred.pop(uuid, None)
            self._last_read.pop(uuid, None)
            self._read_again.pop(uuid, None)
