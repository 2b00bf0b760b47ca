"""An event on its way to StreamMetrics subscribers, with its wire encoding made once and shared by all of them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from florist_grpc.domain.model import MetricsEvent


class Frame:
    """One persisted event, as every stream that delivers it shares it.

    The hub puts the same Frame in every subscriber's queue and a replay page hands the same Frames to every
    reader of that page, so an event is encoded once however many streams send it (the encoding itself is the
    API layer's business: this layer only keeps the bytes).
    """

    __slots__ = ("_encoded", "event")

    def __init__(self, event: MetricsEvent) -> None:
        self.event = event
        self._encoded: bytes | None = None

    @property
    def sequence(self) -> int:
        return self.event.sequence

    def encoded(self, encode: Callable[[MetricsEvent], bytes]) -> bytes:
        """The event's bytes, made by `encode` on first use (there is one encoding per process: the response
        message of StreamMetrics)."""
        if self._encoded is None:
            self._encoded = encode(self.event)
        return self._encoded


# Recent events' Frames kept for whoever sends them next: live subscribers and replays of a running job's last
# page all ask for the same few (the previous response cache held 4,096 encoded responses).
RECENT_FRAMES = 4096


class RecentFrames:
    """The one Frame of each recent event, whichever way it reaches a stream (fan-out, a page read again), so
    that it is encoded once. Lives on the event loop."""

    def __init__(self, capacity: int = RECENT_FRAMES) -> None:
        self._capacity = capacity
        self._frames: OrderedDict[tuple[str, int], Frame] = OrderedDict()

    def of(self, event: MetricsEvent) -> Frame:
        key = (event.job_id, event.sequence)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = Frame(event)
            if len(self._frames) > self._capacity:
                self._frames.popitem(last=False)
        return frame
