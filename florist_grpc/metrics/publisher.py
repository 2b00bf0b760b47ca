"""The last step of a report's way through metrics/: a persisted event goes to every subscriber, and is counted.

Only events the store has already appended come here (report changes from the ingest, a job's ending from the
follower), so a subscriber never sees an event that a replay from the store would not also yield.
"""

from __future__ import annotations

from typing import Protocol

from florist_grpc.domain.model import MetricsEvent
from florist_grpc.metrics.hub import EventHub


class PublishedEvents(Protocol):
    """Where published events are counted (the `/metrics` endpoint's counters in the control plane)."""

    def events_published(self, events: list[MetricsEvent]) -> None: ...


class EventPublisher:
    """Hands persisted events from any thread to the hub on the event loop, one wake-up per batch."""

    def __init__(self, hub: EventHub, counted: PublishedEvents) -> None:
        self._hub = hub
        self._counted = counted

    def publish(self, events: list[MetricsEvent]) -> None:
        """Fan `events` (persisted, in sequence order per job) out to the subscribers of their jobs."""
        self._hub.publish_threadsafe(events)
        self._counted.events_published(events)
