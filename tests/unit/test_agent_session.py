"""One agent session on the control plane's side: requests and replies correlated by id, log chunks in order,
and a closed session failing everyone who waits on it (no gRPC: the session is plain asyncio)."""

from __future__ import annotations

import asyncio

import pytest

from florist_grpc.domain.errors import Aborted, FailedPrecondition, Unavailable
from florist_grpc.launch.agent_session import AgentSession
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb


def check(request_id: str) -> pb.ConnectResponse:
    return pb.ConnectResponse(check_data=pb.CheckData(request_id=request_id, data_path="a.pt"))


async def sent(session: AgentSession) -> pb.ConnectResponse:
    return await anext(aiter(session.outgoing()))


def test_replies_reach_their_own_request_whatever_the_order() -> None:
    async def scenario() -> None:
        session = AgentSession(pb.AgentHello(name="site-a"))
        first = asyncio.create_task(session.request(check, 5))
        second = asyncio.create_task(session.request(check, 5))
        ids = [(await sent(session)).check_data.request_id for _ in range(2)]
        assert len(set(ids)) == 2
        for request_id, ok in [(ids[1], False), (ids[0], True)]:
            result = pb.DataCheckResult(request_id=request_id, ok=ok)
            session.deliver(pb.ConnectRequest(data_check_result=result))
        assert (await first).data_check_result.ok and not (await second).data_check_result.ok

    asyncio.run(scenario())


def test_an_unanswered_request_is_unavailable_naming_the_agent() -> None:
    async def scenario() -> None:
        session = AgentSession(pb.AgentHello(name="site-a"))
        with pytest.raises(Unavailable, match="site-a"):
            await session.request(check, 0.05)

    asyncio.run(scenario())


def test_closing_a_session_fails_its_waiters_and_log_readers() -> None:
    async def scenario() -> None:
        session = AgentSession(pb.AgentHello(name="site-a"))
        waiting = asyncio.create_task(session.request(check, 5))
        chunks: list[tuple[str, int]] = []

        async def read() -> None:
            async for chunk in session.read_log("u1", 0, True):
                chunks.append(chunk)

        reading = asyncio.create_task(read())
        await sent(session)
        log_request = (await sent(session)).read_log
        session.deliver(
            pb.ConnectRequest(log_chunk=pb.LogChunk(request_id=log_request.request_id, text="hi", next_offset=2))
        )
        await asyncio.sleep(0)  # let the reader take the chunk
        session.close(Aborted("replaced"))
        with pytest.raises(Aborted):
            await waiting
        with pytest.raises(Aborted):
            await reading
        assert chunks == [("hi", 2)]
        with pytest.raises(Aborted):
            await session.request(check, 5)

    asyncio.run(scenario())


def test_a_log_request_the_agent_refuses_ends_the_log_with_its_reason() -> None:
    async def scenario() -> None:
        session = AgentSession(pb.AgentHello(name="site-a"))

        async def read() -> list[tuple[str, int]]:
            return [chunk async for chunk in session.read_log("nope", 0, False)]

        reading = asyncio.create_task(read())
        request_id = (await sent(session)).read_log.request_id
        session.deliver(pb.ConnectRequest(request_failed=pb.RequestFailed(request_id=request_id, message="no client")))
        with pytest.raises(FailedPrecondition, match="site-a: no client"):
            await reading

    asyncio.run(scenario())
