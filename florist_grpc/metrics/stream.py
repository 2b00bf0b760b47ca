"""StreamMetrics: replay a job's events from the store, then follow the hub, spliced with no gap or duplicate.

The subscription is taken *before* the replay, so an event persisted during the replay is either read by the
replay or queued in the subscription (or both: duplicates are dropped by sequence). A gap -- an event published
out of order, or dropped because this subscriber lagged -- is filled from the store, which holds every event.

A position past the last event is allowed while the job runs (a client resuming from a sequence it was told
about elsewhere): the stream then ends with the job. Once the job has ended it is OUT_OF_RANGE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from florist_grpc.domain.errors import FieldViolation, InvalidArgument, OutOfRange, job_not_found, quote
from florist_grpc.domain.model import MetricsEvent
from florist_grpc.metrics.hub import EventHub, Subscription
from florist_grpc.store.base import JobStore

REPLAY_BATCH = 500
# Sequences are stored as signed 64-bit integers (SQLite, MongoDB): no event can be numbered beyond this.
MAX_SEQUENCE = 2**63 - 1


async def _from_store(store: JobStore, job_id: str, after: int, upto: int | None = None) -> list[MetricsEvent]:
    events = await asyncio.to_thread(store.read_events, job_id, after, REPLAY_BATCH)
    return [e for e in events if upto is None or e.sequence <= upto]


async def _ended(store: JobStore, job_id: str, last: int) -> bool:
    """Whether the job has ended and its terminal event is at or before `last`: nothing more will come."""
    job = await asyncio.to_thread(store.get_job, job_id)
    return job is None or (job.state.terminal and job.last_sequence <= last)


async def _next_live(subscription: Subscription) -> MetricsEvent | None:
    """The next queued event, or None when the subscriber lagged and must read the store."""
    if subscription.queue.empty() and subscription.lagging:
        return None
    return await subscription.queue.get()


async def job_events(
    store: JobStore,
    hub: EventHub,
    job_id: str,
    after_sequence: int,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[MetricsEvent]:
    """Every event of the job after `after_sequence`, in order, ending after the terminal one.

    `on_subscribed` runs once the live subscription exists (before the replay), e.g. to confirm the stream.
    """
    if after_sequence > MAX_SEQUENCE:
        raise InvalidArgument([FieldViolation("after_sequence", f"must be at most {MAX_SEQUENCE} (2^63 - 1)")])
    job = await asyncio.to_thread(store.get_job, job_id)
    if job is None:
        raise job_not_found(job_id)
    if job.state.terminal and after_sequence > job.last_sequence:
        raise OutOfRange(
            f"job {quote(job_id)} ended with event {job.last_sequence}; after_sequence {after_sequence} is past it",
            reason="SEQUENCE_OUT_OF_RANGE",
            metadata={"job_id": job_id, "last_sequence": str(job.last_sequence)},
        )
    subscription = hub.subscribe(job_id)
    last = after_sequence
    try:
        if on_subscribed is not None:
            await on_subscribed()
        while True:  # replay
            batch = await _from_store(store, job_id, last)
            for event in batch:
                yield event
                last = event.sequence
                if event.job_state.terminal:
                    return
            if len(batch) < REPLAY_BATCH:
                break
        if await _ended(store, job_id, last):
            return  # finished before we caught up: nothing more will come
        while True:  # live
            live = await _next_live(subscription)
            if live is None:
                # Lagged: events were dropped for this subscriber. Rejoin the fan-out first, then read the store,
                # so that nothing published from now on is missed.
                subscription.lagging = False
                pending = [e async for e in _drain_store(store, job_id, last)]
                for stored in pending:
                    yield stored
                    last = stored.sequence
                    if stored.job_state.terminal:
                        return
                if await _ended(store, job_id, last):
                    return  # the terminal event was among those dropped, at or before `last`
                continue
            event = live
            if event.sequence <= last:
                if event.job_state.terminal:
                    return  # the job ended before the position asked for: nothing more will ever come
                continue
            if event.sequence > last + 1:
                for stored in await _from_store(store, job_id, last, event.sequence - 1):
                    yield stored
                    last = stored.sequence
                    if stored.job_state.terminal:
                        return
            yield event
            last = event.sequence
            if event.job_state.terminal:
                return
    finally:
        hub.unsubscribe(subscription)


async def _drain_store(store: JobStore, job_id: str, after: int) -> AsyncIterator[MetricsEvent]:
    while True:
        batch = await _from_store(store, job_id, after)
        for event in batch:
            yield event
            after = event.sequence
        if len(batch) < REPLAY_BATCH:
            return
