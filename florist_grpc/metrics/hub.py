"""In-process fan-out of persisted events to StreamMetrics subscribers.

Lives on the event loop: publish() runs there (threads call publish_threadsafe). Each event becomes one Frame
(from `frames`, shared with the replays), and that same Frame goes to every subscriber: fan-out copies a
reference per subscriber, never the event, and the event is encoded once for all of them. Each subscriber has a
bounded queue; a subscriber that falls behind is marked `lagging` and dropped from fan-out until it has caught up
from the store, so a slow reader never blocks the listeners or other subscribers and never holds unbounded
memory.

Observers (`observe`) see every published batch, of every job, subscribed or not: the experiment trackers' followers
(florist_grpc/export) learn there that a job has new events, and read them from the store on threads of their own.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable

from florist_grpc.domain.model import MetricsEvent
from florist_grpc.metrics.frame import Frame, RecentFrames

DEFAULT_QUEUE_CAPACITY = 256


class Subscription:
    """One stream's place in the fan-out: the Frames queued for it (at most `capacity`), read by that stream alone.

    A deque and one waiter, not an asyncio.Queue: the hub queues an event for every subscriber of its job, so
    what each put costs is paid once per message; a Queue's put and get each walk its waiters and check the loop.
    """

    __slots__ = ("_capacity", "_frames", "_waiter", "job_id", "lagging")

    def __init__(self, job_id: str, capacity: int) -> None:
        self.job_id = job_id
        self._capacity = capacity
        self._frames: deque[Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # Set when an event was dropped because the queue was full. A lagging reader therefore always has queued
        # events left to read, never blocks on an empty queue, and finds the flag once it has drained them.
        self.lagging = False

    def offer(self, frame: Frame) -> None:
        """Queue `frame` for the stream, or mark it lagging if its queue is full (on the loop)."""
        if len(self._frames) >= self._capacity:
            self.lagging = True
            return
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # its reader may have been cancelled
                waiter.set_result(None)

    def queued(self) -> int:
        return len(self._frames)

    async def next(self) -> Frame:
        """The next queued Frame, waiting for one if there is none (one reader at a time)."""
        while not self._frames:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._frames.popleft()


class EventHub:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int = DEFAULT_QUEUE_CAPACITY,
        frames: RecentFrames | None = None,
    ) -> None:
        self._loop = loop
        self._capacity = capacity
        self.frames = frames if frames is not None else RecentFrames()
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._observers: list[Callable[[list[MetricsEvent]], None]] = []

    def observe(self, observer: Callable[[list[MetricsEvent]], None]) -> None:
        """Call `observer` on the loop with every published batch, before the fan-out; it must return at once
        (note the news and hand the work to a thread of its own)."""
        self._observers.append(observer)

    def subscribe(self, job_id: str) -> Subscription:
        subscription = Subscription(job_id, self._capacity)
        self._subscribers[job_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.job_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.job_id]

    def subscriber_count(self, job_id: str | None = None) -> int:
        if job_id is None:
            return sum(len(s) for s in self._subscribers.values())
        return len(self._subscribers.get(job_id, ()))

    def publish(self, event: MetricsEvent) -> None:
        self.publish_many([event])

    def _fan_out(self, event: MetricsEvent) -> None:
        subscribers = self._subscribers.get(event.job_id)
        if not subscribers:
            return
        frame = self.frames.of(event)
        for subscription in subscribers:
            if not subscription.lagging:
                subscription.offer(frame)

    def publish_many(self, events: list[MetricsEvent]) -> None:
        for observer in self._observers:
            observer(events)
        for event in events:
            self._fan_out(event)

    def publish_threadsafe(self, events: list[MetricsEvent]) -> None:
        """Hand events from another thread to the loop: one wake-up per batch, not per event."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish_many, events)
