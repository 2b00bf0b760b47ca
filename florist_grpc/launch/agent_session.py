"""One open Connect stream of an agent, seen from the control plane: what to send it, and replies awaited by id.

Everything here runs on the event loop. The control plane's requests carry a fresh `request_id`; the agent's
replies carry it back, so any number of launches, data checks and log reads share one stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from florist_grpc.domain.errors import FailedPrecondition, FloristError, Unavailable
from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.launch.agent_protocol import (
    AgentHello,
    AgentMessage,
    CancelRequest,
    Command,
    DataCheckResult,
    LogChunk,
    ProcessStarted,
    ReadLog,
    Reply,
    RequestFailed,
)

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Reply)


class AgentSession:
    def __init__(self, hello: AgentHello) -> None:
        self.hello = hello
        self.name = hello.name
        self.connect_time = datetime.now(UTC)
        self.last_seen = self.connect_time
        self.last_seen_monotonic = time.monotonic()
        self.closed: FloristError | None = None
        self.problem = ""  # why the agent cannot run clients now, as it last said ('' = healthy)
        self._outbox: asyncio.Queue[Command | None] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[Reply]] = {}
        self._logs: dict[str, asyncio.Queue[LogChunk | FloristError]] = {}

    def seen(self) -> None:
        self.last_seen = datetime.now(UTC)
        self.last_seen_monotonic = time.monotonic()

    def report_health(self, problem: str) -> None:
        """The agent's health as its hello or a heartbeat says it; a change is logged."""
        if problem != self.problem:
            if problem:
                log.warning("agent %s is unhealthy: %s", self.name, problem)
            else:
                log.info("agent %s is healthy again", self.name)
        self.problem = problem

    def send(self, message: Command) -> None:
        if self.closed is None:
            self._outbox.put_nowait(message)

    async def outgoing(self) -> AsyncIterator[Command]:
        """The messages to write to the stream, until the session is closed."""
        while (message := await self._outbox.get()) is not None:
            yield message

    async def request(self, build: Callable[[str], Command], answer: type[R], timeout: float) -> R | RequestFailed:
        """Send the request `build(request_id)` and wait for its reply: an `answer`, or the agent's RequestFailed
        (UNAVAILABLE if none comes in time, FAILED_PRECONDITION if the agent answers with something else)."""
        if self.closed is not None:
            raise self.closed
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            request = build(request_id)
            self.send(request)
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise Unavailable(f"agent {self.name} did not answer within {timeout:g}s") from exc
        finally:
            self._replies.pop(request_id, None)
        if not isinstance(reply, (answer, RequestFailed)):
            kinds = f"{type(request).__name__} with a {type(reply).__name__}"
            raise FailedPrecondition(f"agent {self.name} answered a {kinds}")
        return reply

    async def read_log(self, client_uuid: str, offset: int, follow: bool) -> AsyncIterator[tuple[str, int]]:
        """A client's log as the agent streams it: (text, next_offset) chunks."""
        if self.closed is not None:
            raise self.closed
        request_id = uuid.uuid4().hex
        chunks: asyncio.Queue[LogChunk | FloristError] = asyncio.Queue()
        self._logs[request_id] = chunks
        ended = False
        try:
            self.send(ReadLog(request_id, client_uuid, offset, follow))
            while True:
                chunk = await chunks.get()
                if isinstance(chunk, FloristError):
                    ended = True
                    raise chunk
                if chunk.text:
                    yield chunk.text, chunk.next_offset
                if chunk.end:
                    ended = True
                    return
        finally:
            self._logs.pop(request_id, None)
            if not ended:  # the reader went away: the agent can stop following the file
                self.send(CancelRequest(request_id))

    def deliver(self, message: AgentMessage) -> None:
        """Hand a reply or a log chunk to whoever waits for it (late or unknown ones are dropped)."""
        if isinstance(message, LogChunk):
            queue = self._logs.get(message.request_id)
            if queue is not None:
                queue.put_nowait(message)
        elif isinstance(message, RequestFailed) and message.request_id in self._logs:
            self._logs[message.request_id].put_nowait(FailedPrecondition(f"agent {self.name}: {message.message}"))
        elif isinstance(message, ProcessStarted | DataCheckResult | RequestFailed):
            future = self._replies.get(message.request_id)
            if future is not None and not future.done():
                future.set_result(message)

    def close(self, error: FloristError) -> None:
        """End the session: waiters get `error`, the writer stops."""
        if self.closed is not None:
            return
        self.closed = error
        for future in self._replies.values():
            if not future.done():
                future.set_exception(error)
        for queue in self._logs.values():
            queue.put_nowait(error)
        self._outbox.put_nowait(None)


@dataclass(frozen=True)
class AgentView:
    """One agent as ListAgents shows it."""

    name: str
    connected: bool
    connect_time: datetime
    last_seen: datetime
    devices: tuple[str, ...]
    version: str
    data_root: str
    problem: str  # '' = healthy
    max_clients: int = 0  # the most clients it runs at once (0 = no limit)
    policy: SitePolicy = field(default_factory=SitePolicy)  # the jobs it runs (its --allow-project, --allow-model)
