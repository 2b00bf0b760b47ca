"""WatchJobs: replay the changes log from a revision, then follow the hub, spliced with no gap or duplicate.

The subscription is taken *before* the replay, so a change committed during the replay is either read by it or
queued (or both: duplicates are dropped by revision). A change that arrives past the next expected revision is
preceded by whatever the log holds in between. A watch that lagged (its queue overflowed) rejoins the fan-out
and reads the log from its position; if the log no longer holds it, the watch ends OUT_OF_RANGE (list again).

Every watch opens with a BOOKMARK at its starting revision: the current one for a watch from now, else the one it
asked for. After `bookmark_seconds` without sending anything it sends a BOOKMARK at the last revision it has
looked at (sent or not of its business): every bookmark is a safe place to resume from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import ChangeType, JobChange
from florist_grpc.domain.projects import Caller
from florist_grpc.jobs.job_filter import JobFilter
from florist_grpc.jobs.watch_filter import as_seen
from florist_grpc.jobs.watch_hub import ChangeSubscription, WatchHub
from florist_grpc.store.base import JobStore

REPLAY_BATCH = 500
# Revisions are stored as signed 64-bit integers (SQLite, MongoDB).
MAX_REVISION = 2**63 - 1


@dataclass(frozen=True)
class Watch:
    """What a WatchJobs call asks for, and who asks."""

    caller: Caller
    job_filter: JobFilter
    after_revision: int
    with_metrics: bool = False


class _Position:
    """How far a watch has looked (its resume point) and when it last sent something."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self.sent_at = time.monotonic()


# Queued by a watch's bookmark timer: the watch may owe its client a bookmark (if it stayed silent that long).
BOOKMARK_DUE = JobChange(-1, ChangeType.BOOKMARK)


class _Bookmarks:
    """Wakes a silent watch to send a bookmark: one timer per bookmark interval, not one per change (a timeout
    on every wait for the next change would cost a task per change and subscriber)."""

    def __init__(self, subscription: ChangeSubscription, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._subscription = subscription
        self._seconds = seconds
        self._handle = self._loop.call_later(seconds, self._due)

    def _due(self) -> None:
        try:
            self._subscription.queue.put_nowait(BOOKMARK_DUE)
        except asyncio.QueueFull:  # changes wait to be sent: no silence to fill; look again later
            self.rearm(self._seconds)

    def rearm(self, delay: float) -> None:
        self._handle = self._loop.call_later(max(0.0, delay), self._due)

    def cancel(self) -> None:
        self._handle.cancel()


async def _next_live(subscription: ChangeSubscription) -> JobChange | None:
    """The next queued change (or BOOKMARK_DUE); None when the subscriber lagged and must read the store."""
    if subscription.queue.empty() and subscription.lagging:
        return None
    return await subscription.queue.get()


async def watch_changes(
    store: JobStore,
    hub: WatchHub,
    watch: Watch,
    bookmark_seconds: float,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[JobChange]:
    """The changes the watch sees, in revision order, BOOKMARKs among them; runs until the caller stops reading."""
    if watch.after_revision > MAX_REVISION:
        raise InvalidArgument([FieldViolation("after_revision", f"must be at most {MAX_REVISION} (2^63 - 1)")])
    subscription = hub.subscribe()
    bookmarks: _Bookmarks | None = None
    try:
        if on_subscribed is not None:
            await on_subscribed()
        current = await asyncio.to_thread(store.current_revision)
        start = watch.after_revision or current
        # Checks the position (OUT_OF_RANGE when the log no longer holds it, or it is in the future) before the
        # opening bookmark, so a bad position is an error, not a stream that starts.
        first = await asyncio.to_thread(store.read_changes, start, REPLAY_BATCH)
        position = _Position(start)
        yield JobChange(start, ChangeType.BOOKMARK)
        async for change in _from_store(store, position, first):
            if (seen := await _seen(store, watch, change)) is not None:
                yield seen
                position.sent_at = time.monotonic()
        bookmarks = _Bookmarks(subscription, bookmark_seconds)
        while True:  # live
            live = await _next_live(subscription)
            if live is BOOKMARK_DUE:
                silence = time.monotonic() - position.sent_at
                if silence >= bookmark_seconds:
                    yield JobChange(position.revision, ChangeType.BOOKMARK)
                    position.sent_at, silence = time.monotonic(), 0.0
                bookmarks.rearm(bookmark_seconds - silence)
                continue
            if live is None:
                # Lagged: changes were dropped for this watch. Rejoin the fan-out first, then read the log, so that
                # nothing published from now on is missed.
                subscription.lagging = False
                pending = await asyncio.to_thread(store.read_changes, position.revision, REPLAY_BATCH)
                batch = _from_store(store, position, pending)
            elif live.revision <= position.revision:
                continue
            elif live.revision == position.revision + 1:  # the usual case, without a generator
                position.revision = live.revision
                if (seen := await _seen(store, watch, live)) is not None:
                    yield seen
                    position.sent_at = time.monotonic()
                continue
            elif live.revision > position.revision + 1:
                # After a gap (a change published before this watch subscribed, or a revision that was taken but
                # never written): what the log holds before it comes first.
                batch = _up_to(store, position, live)
            async for change in batch:
                if (seen := await _seen(store, watch, change)) is not None:
                    yield seen
                    position.sent_at = time.monotonic()
    finally:
        if bookmarks is not None:
            bookmarks.cancel()
        hub.unsubscribe(subscription)


async def _up_to(store: JobStore, position: _Position, live: JobChange) -> AsyncIterator[JobChange]:
    """The log's changes after `position` up to `live`, then `live` (unless the log had it)."""
    while position.revision < live.revision - 1:
        limit = min(REPLAY_BATCH, live.revision - 1 - position.revision)
        batch = await asyncio.to_thread(store.read_changes, position.revision, limit)
        for change in batch:
            position.revision = change.revision
            yield change
        if len(batch) < limit:
            break
    if live.revision > position.revision:
        position.revision = live.revision
        yield live


async def _from_store(store: JobStore, position: _Position, first: list[JobChange]) -> AsyncIterator[JobChange]:
    """`first` (a batch read after `position`), then the log after it, batch by batch, to its end."""
    batch = first
    while True:
        for change in batch:
            position.revision = change.revision
            yield change
        if len(batch) < REPLAY_BATCH:
            return
        batch = await asyncio.to_thread(store.read_changes, position.revision, REPLAY_BATCH)


async def _seen(store: JobStore, watch: Watch, change: JobChange) -> JobChange | None:
    """The change as this watch sends it (None: not its business), with the job's reports for a FULL view."""
    seen = as_seen(change, watch.job_filter, watch.caller)
    if seen is None or not watch.with_metrics or seen.job is None or seen.type is ChangeType.DELETED:
        return seen
    current = await asyncio.to_thread(store.get_job, seen.job.id)
    if current is None:
        return seen
    metrics = [replace(c, metrics=now.metrics) for c, now in zip(seen.job.clients, current.clients, strict=True)]
    return replace(seen, job=replace(seen.job, server_metrics=current.server_metrics, clients=metrics))
