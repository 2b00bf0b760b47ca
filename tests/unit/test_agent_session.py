"""One agent session on the control plane's side: requests and replies correlated by id, log chunks in order,
and a closed session failing everyone who waits on it (no gRPC: the session is plain asyncio)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest

from florist_grpc.domain.errors import Aborted, FailedPrecondition, Unavailable
from florist_grpc.launch.agent_protocol import (
    AgentHello,
    CheckData,
    Command,
    DataCheckResult,
    LogChunk,
    ProcessStarted,
    ReadLog,
    RequestFailed,
)
from florist_grpc.launch.agent_session import AgentSession

C = TypeVar("C", bound=Command)


def check(request_id: str) -> CheckData:
    return CheckData(request_id, "a.pt")


async def sent(session: AgentSession, kind: type[C]) -> C:
    """The next request the session sends the agent, which must be a `kind`."""
    request: Command = await anext(aiter(session.outgoing()))
    assert isinstance(request, kind)
    return request


def test_replies_reach_their_own_request_whatever_the_order() -> None:
    async def scenario() -> None:
        session = AgentSession(AgentHello("site-a"))
        first = asyncio.create_task(session.request(check, DataCheckResult, 5))
        second = asyncio.create_task(session.request(check, DataCheckResult, 5))
        ids = [(await sent(session, CheckData)).request_id for _ in range(2)]
        assert len(set(ids)) == 2
        for request_id, ok in [(ids[1], False), (ids[0], True)]:
            session.deliver(DataCheckResult(request_id, ok))
        assert await first == DataCheckResult(ids[0], True)
        assert await second == DataCheckResult(ids[1], False)

    asyncio.run(scenario())


def test_an_unanswered_request_is_unavailable_naming_the_agent() -> None:
    async def scenario() -> None:
        session = AgentSession(AgentHello("site-a"))
        with pytest.raises(Unavailable, match="site-a"):
            await session.request(check, DataCheckResult, 0.05)

    asyncio.run(scenario())


def test_a_reply_of_the_wrong_kind_fails_the_request_naming_both_kinds() -> None:
    async def scenario() -> None:
        session = AgentSession(AgentHello("site-a"))
        waiting = asyncio.create_task(session.request(check, DataCheckResult, 5))
        request = await sent(session, CheckData)
        session.deliver(ProcessStarted(request.request_id, "u1", 42, "u1.log"))
        with pytest.raises(FailedPrecondition, match="site-a answered a CheckData with a ProcessStarted"):
            await waiting

    asyncio.run(scenario())


def test_closing_a_session_fails_its_waiters_and_log_readers() -> None:
    async def scenario() -> None:
        session = AgentSession(AgentHello("site-a"))
        waiting = asyncio.create_task(session.request(check, DataCheckResult, 5))
        chunks: list[tuple[str, int]] = []

        async def read() -> None:
            async for chunk in session.read_log("u1", 0, True):
                chunks.append(chunk)

        reading = asyncio.create_task(read())
        await sent(session, CheckData)
        log_request = await sent(session, ReadLog)
        session.deliver(LogChunk(log_request.request_id, "hi", 2))
        await asyncio.sleep(0)  # let the reader take the chunk
        session.close(Aborted("replaced"))
        with pytest.raises(Aborted):
            await waiting
        with pytest.raises(Aborted):
            await reading
        assert chunks == [("hi", 2)]
        with pytest.raises(Aborted):
            await session.request(check, DataCheckResult, 5)

    asyncio.run(scenario())


def test_a_log_request_the_agent_refuses_ends_the_log_with_its_reason() -> None:
    async def scenario() -> None:
        session = AgentSession(AgentHello("site-a"))

        async def read() -> list[tuple[str, int]]:
            return [chunk async for chunk in session.read_log("nope", 0, False)]

        reading = asyncio.create_task(read())
        request_id = (await sent(session, ReadLog)).request_id
        session.deliver(RequestFailed(request_id, 9, "no client"))
        with pytest.raises(FailedPrecondition, match="site-a: no client"):
            await reading

    asyncio.run(scenario())
