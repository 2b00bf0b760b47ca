"""The live side of the changes log: a store hands every change it commits to its listeners, in revision order.

Writers of one store object take `ordered()` around the transaction that records a change; the changes it
recorded are handed on after the commit and before any other writer's, so listeners see revisions in order
without reading the store (WatchJobs fans out from here; the store is only read to replay).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from florist_grpc.domain.model import JobChange

log = logging.getLogger(__name__)

# The store keeps at least this many of the latest changes (a watch may resume from any of them).
KEEP_CHANGES = 10_000
# Older changes are trimmed every this many changes (not at each one: a delete per write would cost more).
TRIM_EVERY = 100


class ChangeFeed:
    def __init__(self) -> None:
        # Reentrant: a backend's write may call another of its own writes.
        self._lock = threading.RLock()
        self._listeners: list[Callable[[JobChange], None]] = []

    def subscribe(self, listener: Callable[[JobChange], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    @contextmanager
    def ordered(self) -> Iterator[list[JobChange]]:
        """Around a write: append the changes it committed to the list; they are handed on when the block ends
        without an exception (nothing is, when it raises: the write was rolled back)."""
        with self._lock:
            made: list[JobChange] = []
            yield made
            for change in made:
                for listener in self._listeners:
                    try:
                        listener(change)
                    except Exception:  # a listener's bug must not fail the write that already committed
                        log.exception("change listener failed on revision %d", change.revision)
