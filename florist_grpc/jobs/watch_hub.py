"""In-process fan-out of the store's job changes to WatchJobs streams.

The store hands every change it commits to `publish_threadsafe` from the writing thread, in revision order
(store/change_feed.py); the loop delivers it to every subscription's bounded queue. No watch reads the store to
follow: it reads it only to replay, or to catch up after it lagged (its queue overflowed, so it was dropped from
the fan-out until it has read the store), as StreamMetrics does with metrics/hub.py.
"""

from __future__ import annotations

import asyncio

from florist_grpc.domain.model import JobChange

DEFAULT_QUEUE_CAPACITY = 1024


class ChangeSubscription:
    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[JobChange] = asyncio.Queue(capacity)
        # Set when a change was dropped because the queue was full: the reader drains the queue, then reads the
        # store from its position.
        self.lagging = False


class WatchHub:
    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int = DEFAULT_QUEUE_CAPACITY) -> None:
        self._loop = loop
        self._capacity = capacity
        self._subscribers: set[ChangeSubscription] = set()

    def subscribe(self) -> ChangeSubscription:
        subscription = ChangeSubscription(self._capacity)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: ChangeSubscription) -> None:
        self._subscribers.discard(subscription)

    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, change: JobChange) -> None:
        """On the loop: queue the change for every subscriber keeping up."""
        for subscription in self._subscribers:
            if subscription.lagging:
                continue
            try:
                subscription.queue.put_nowait(change)
            except asyncio.QueueFull:
                subscription.lagging = True

    def publish_threadsafe(self, change: JobChange) -> None:
        """From the store's writing thread (calls arrive in revision order and the loop keeps that order)."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish, change)
