"""How many streams send stored events at once: a replay storm must not starve the event loop.

grpc.aio accepts calls one at a time from the event loop, and every stream that is sending adds work to each turn
of that loop. 2,000 streams replaying a 1,376-event history at once made each turn so long that calls still
waiting to be accepted passed grpc core's 30 s limit (`grpc.server_max_unrequested_time_in_server`) and were
cancelled before their handler ever ran (docs/benchmarks.md, streams). With at most `slots` streams replaying,
a turn stays short: new calls are accepted (and confirmed) at once, live subscribers are not held up, and the
others wait their turn without costing anything.

A stream whose reader has stopped reading (its last stored event not yet taken by gRPC after `stall_seconds`)
gives up its slot to the next one, so a stalled reader never holds back the others; it queues again when it
moves. Slots are handed over in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

REPLAY_SLOTS = 32
STALL_SECONDS = 1.0


class Lease:
    """One stream's place at the gate. `hold()` before each stored event; `release()` once done with them."""

    def __init__(self, gate: ReplayGate) -> None:
        self._gate = gate
        self.active = False
        self.touched = 0.0

    async def hold(self) -> None:
        if not self.active:
            await self._gate.acquire(self)
        self.touched = time.monotonic()

    def release(self) -> None:
        self._gate.release(self)


class ReplayGate:
    """Lives on the event loop."""

    def __init__(self, slots: int = REPLAY_SLOTS, stall_seconds: float = STALL_SECONDS) -> None:
        self._slots = slots
        self._stall_seconds = stall_seconds
        self._holders: dict[Lease, None] = {}  # insertion-ordered set
        self._waiters: deque[tuple[Lease, asyncio.Future[None]]] = deque()

    def lease(self) -> Lease:
        return Lease(self)

    @property
    def replaying(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, lease: Lease) -> None:
        if not self._waiters and len(self._holders) < self._slots:
            self._admit(lease)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((lease, granted))
        try:
            while not granted.done():
                self._revoke_stalled()
                self._hand_over()
                if granted.done():
                    break
                # Wake up after a stall period even if no slot was released: a holder may have stalled meanwhile.
                await asyncio.wait([granted], timeout=self._stall_seconds)
        except BaseException:
            if granted.done():
                self.release(lease)  # granted just as this stream was cancelled: pass the slot on
            else:
                granted.cancel()
            raise

    def release(self, lease: Lease) -> None:
        if lease in self._holders:
            del self._holders[lease]
            lease.active = False
            self._hand_over()

    def _admit(self, lease: Lease) -> None:
        self._holders[lease] = None
        lease.active = True
        lease.touched = time.monotonic()

    def _hand_over(self) -> None:
        while self._waiters and len(self._holders) < self._slots:
            lease, granted = self._waiters.popleft()
            if granted.done():  # its stream was cancelled while waiting
                continue
            self._admit(lease)
            granted.set_result(None)

    def _revoke_stalled(self) -> None:
        stalled_since = time.monotonic() - self._stall_seconds
        for lease in [lease for lease in self._holders if lease.touched < stalled_since]:
            del self._holders[lease]
            lease.active = False
