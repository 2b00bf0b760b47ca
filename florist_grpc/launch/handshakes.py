"""Agent sessions between their first byte and their hello: bounded in time and in number.

An agent says hello at once, so a Connect stream that says nothing holds resources for nothing. Each waits at most
the hello deadline (then it ends DEADLINE_EXCEEDED); at most `per_agent` wait at once under one agent name -- a
newer one closes the oldest, as a newer session replaces an older one, so a flood under a name cannot lock its own
agent out (that agent's hello comes at once) -- and at most `total` in all (past that a new stream is refused at
once). Streams are keyed by the agent name their token belongs to (the caller's key); a flood is logged once per
key, not once per stream. Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from florist_grpc.domain.errors import DeadlineExceeded, ResourceExhausted
from florist_grpc.launch.agent_protocol import AgentMessage

log = logging.getLogger(__name__)

# An agent holds one session; a redial after a network failure may briefly overlap the old one.
PER_AGENT = 4
# Sites reconnecting at once after a restart each wait milliseconds for their hello; this many at once is plenty.
TOTAL = 256


@dataclass
class _Waiting:
    """The streams of one key waiting for their hello, oldest first; `crowded`: a flood was logged."""

    closers: deque[asyncio.Future[None]] = field(default_factory=deque)
    crowded: bool = False


class Handshakes:
    def __init__(self, deadline: float, per_agent: int = PER_AGENT, total: int = TOTAL) -> None:
        self._deadline = deadline
        self._per_agent = per_agent
        self._total = total
        self._waiting: dict[str, _Waiting] = {}
        self._count = 0
        self._full_logged = False

    @property
    def waiting(self) -> int:
        """How many streams wait for their hello now."""
        return self._count

    async def hello(self, key: str, requests: AsyncIterator[AgentMessage | None]) -> AgentMessage | None:
        """The stream's first message (None: one of a kind this version does not know, or none before the stream
        ended). Raises DeadlineExceeded when none comes within the deadline, ResourceExhausted when too many
        streams wait (for this key: the oldest one is closed to make room)."""
        if self._count >= self._total:
            if not self._full_logged:
                log.warning("%d agent streams are waiting for their hello: refusing more until they drain", self._count)
                self._full_logged = True
            raise ResourceExhausted(f"{self._count} agent sessions are waiting for their hello; retry later")
        waiting = self._waiting.setdefault(key, _Waiting())
        if len(waiting.closers) >= self._per_agent:
            if not waiting.crowded:
                shown = f"agent {key}" if key else "agents"
                log.warning(
                    "more than %d sessions of %s waited for hello at once; closing the oldest", self._per_agent, shown
                )
                waiting.crowded = True
            waiting.closers.popleft().set_result(None)
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.closers.append(closed)
        self._count += 1
        first: asyncio.Future[AgentMessage | None] = asyncio.ensure_future(anext(requests, None))
        either: set[asyncio.Future[Any]] = {first, closed}
        try:
            done, _ = await asyncio.wait(either, timeout=self._deadline, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._forget(key, waiting, closed)
            if not first.done():
                first.cancel()
        if first in done:
            return first.result()
        if closed in done:
            raise ResourceExhausted(f"closed: newer sessions of {key or 'an agent'} were waiting for their hello")
        raise DeadlineExceeded(f"no hello within {self._deadline:g}s", reason="NO_HELLO")

    def _forget(self, key: str, waiting: _Waiting, closed: asyncio.Future[None]) -> None:
        self._count -= 1
        if closed in waiting.closers:
            waiting.closers.remove(closed)
        if not waiting.closers and self._waiting.get(key) is waiting:  # drained: the next flood is news again
            del self._waiting[key]
        if self._count < self._total:
            self._full_logged = False
