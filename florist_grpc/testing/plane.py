"""A control plane on its own event-loop thread, for synchronous programs (tests, benchmarks, notebooks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from florist_grpc.config import Settings
from florist_grpc.server import ControlPlane
from florist_grpc.store.base import JobStore

T = TypeVar("T")


class ControlPlaneThread:
    """A ControlPlane serving on its own event-loop thread, for synchronous programs that embed one
    (benchmarks, tests, notebooks). `stop()` shuts it down like SIGTERM would."""

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="control-plane-loop", daemon=True)
        self._thread.start()
        self.plane = ControlPlane(settings, store)
        self.run(self.plane.start())
        self.address = f"127.0.0.1:{self.plane.port}"

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the plane's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        self.run(self.plane.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
