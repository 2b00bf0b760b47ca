"""StreamMetrics: replay a job's events from the store, then follow the hub, spliced with no gap or duplicate.

The subscription is taken *before* the replay, so an event persisted during the replay is either read by the
replay or queued in the subscription (or both: duplicates are dropped by sequence). A gap -- an event published
out of order, or dropped because this subscriber lagged -- is filled from the store, which holds every event.

Every stream reads through one MetricsFeed: stored events come from shared pages (metrics/history.py) and are
sent under the replay gate (metrics/replay_gate.py); live ones are the hub's shared Frames.

A position past the last event is allowed while the job runs (a client resuming from a sequence it was told
about elsewhere): the stream then ends with the job. Once the job has ended it is OUT_OF_RANGE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from florist_grpc.domain.errors import FieldViolation, InvalidArgument, OutOfRange, job_not_found, quote
from florist_grpc.domain.model import MetricsEvent
from florist_grpc.metrics.frame import Frame
from florist_grpc.metrics.history import SharedHistory
from florist_grpc.metrics.hub import EventHub, Subscription
from florist_grpc.metrics.replay_gate import Lease, ReplayGate
from florist_grpc.store.base import JobStore

# Sequences are stored as signed 64-bit integers (SQLite, MongoDB): no event can be numbered beyond this.
MAX_SEQUENCE = 2**63 - 1


@dataclass(frozen=True)
class MetricsFeed:
    """What every StreamMetrics call reads from, one per control plane: the jobs' stored histories, the live
    hub, and the gate that paces replays."""

    history: SharedHistory
    hub: EventHub
    gate: ReplayGate

    @classmethod
    def over(cls, store: JobStore, hub: EventHub) -> MetricsFeed:
        return cls(SharedHistory(store, frames=hub.frames), hub, ReplayGate())


async def _ended(history: SharedHistory, job_id: str, last: int) -> bool:
    """Whether the job has ended and its terminal event is at or before `last`: nothing more will come."""
    progress = await history.progress(job_id)
    return progress is None or progress.ended_by(last)


async def _next_live(subscription: Subscription) -> Frame | None:
    """The next queued event, or None when the subscriber lagged and must read the store."""
    if subscription.lagging and not subscription.queued():
        return None
    return await subscription.next()


async def _stored(
    feed: MetricsFeed, job_id: str, after: int, ticket: int, lease: Lease | None, upto: int | None = None
) -> AsyncIterator[Frame]:
    """The stored events after `after` (up to `upto`), page by page, each sent under `lease` if given."""
    while True:
        frames, complete = await feed.history.frames_after(job_id, after, ticket)
        for frame in frames:
            if upto is not None and frame.sequence > upto:
                return
            if lease is not None:
                await lease.hold()
            yield frame
            after = frame.sequence
        if not frames or not complete:
            return


async def job_events(
    store: JobStore,
    hub: EventHub,
    job_id: str,
    after_sequence: int,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[MetricsEvent]:
    """job_frames' events, read through a feed of their own (one stream over a store and a hub)."""
    async for frame in job_frames(MetricsFeed.over(store, hub), job_id, after_sequence, on_subscribed):
        yield frame.event


async def job_frames(
    feed: MetricsFeed,
    job_id: str,
    after_sequence: int,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[Frame]:
    """Every event of the job after `after_sequence`, in order, ending after the terminal one.

    `on_subscribed` runs once the live subscription exists (before the replay), e.g. to confirm the stream.
    """
    if after_sequence > MAX_SEQUENCE:
        raise InvalidArgument([FieldViolation("after_sequence", f"must be at most {MAX_SEQUENCE} (2^63 - 1)")])
    progress = await feed.history.progress(job_id)
    if progress is None:
        raise job_not_found(job_id)
    if progress.state.terminal and after_sequence > progress.last_sequence:
        last_sequence = progress.last_sequence
        raise OutOfRange(
            f"job {quote(job_id)} ended with event {last_sequence}; after_sequence {after_sequence} is past it",
            reason="SEQUENCE_OUT_OF_RANGE",
            metadata={"job_id": job_id, "last_sequence": str(last_sequence)},
        )
    subscription = feed.hub.subscribe(job_id)
    ticket = feed.history.ticket()
    lease = feed.gate.lease()
    last = after_sequence
    try:
        if on_subscribed is not None:
            await on_subscribed()
        async for stored in _stored(feed, job_id, last, ticket, lease):  # replay
            yield stored
            last = stored.sequence
            if stored.event.job_state.terminal:
                return
        lease.release()
        if await _ended(feed.history, job_id, last):
            return  # finished before we caught up: nothing more will come
        while True:  # live
            live = await _next_live(subscription)
            if live is None:
                # Lagged: events were dropped for this subscriber. Rejoin the fan-out first, then read the store,
                # so that nothing published from now on is missed.
                subscription.lagging = False
                async for stored in _stored(feed, job_id, last, feed.history.ticket(), lease):
                    yield stored
                    last = stored.sequence
                    if stored.event.job_state.terminal:
                        return
                lease.release()
                if await _ended(feed.history, job_id, last):
                    return  # the terminal event was among those dropped, at or before `last`
                continue
            if live.sequence <= last:
                if live.event.job_state.terminal:
                    return  # the job ended before the position asked for: nothing more will ever come
                continue
            if live.sequence > last + 1:
                # Everything before `live` was persisted before it was published: a read begun now holds it.
                gap = _stored(feed, job_id, last, feed.history.ticket(), None, upto=live.sequence - 1)
                async for stored in gap:
                    yield stored
                    last = stored.sequence
                    if stored.event.job_state.terminal:
                        return
            yield live
            last = live.sequence
            if live.event.job_state.terminal:
                return
    finally:
        lease.release()
        feed.hub.unsubscribe(subscription)
