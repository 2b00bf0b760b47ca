"""Agent streams before their hello (launch/handshakes.py): bounded in time, per agent name and in all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from florist_grpc.domain.errors import DeadlineExceeded, ResourceExhausted
from florist_grpc.launch.agent_protocol import AgentHello, AgentMessage
from florist_grpc.launch.handshakes import Handshakes


class Stream:
    """A Connect stream's messages, sent when the test says."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[AgentMessage | None] = asyncio.Queue()

    async def messages(self) -> AsyncIterator[AgentMessage | None]:
        while (message := await self.queue.get()) is not None:
            yield message


async def waiting(handshakes: Handshakes, key: str) -> tuple[Stream, asyncio.Task[AgentMessage | None]]:
    stream = Stream()
    task = asyncio.ensure_future(handshakes.hello(key, stream.messages()))
    await asyncio.sleep(0)  # let it register (one loop turn, not a wait for time)
    return stream, task


def test_a_hello_is_taken_at_once_and_silence_ends_at_the_deadline() -> None:
    async def scenario() -> None:
        handshakes = Handshakes(deadline=0.2)
        stream, hello = await waiting(handshakes, "site-a")
        stream.queue.put_nowait(AgentHello("site-a"))
        assert await hello == AgentHello("site-a")
        _, silent = await waiting(handshakes, "site-a")
        with pytest.raises(DeadlineExceeded):
            await silent
        assert handshakes.waiting == 0

    asyncio.run(scenario())


def test_past_the_bound_for_one_agent_name_a_newer_stream_closes_the_oldest_and_other_names_are_untouched() -> None:
    async def scenario() -> None:
        handshakes = Handshakes(deadline=30, per_agent=2, total=10)
        _, oldest = await waiting(handshakes, "site-a")
        _, second = await waiting(handshakes, "site-a")
        _, other = await waiting(handshakes, "site-b")
        newest, third = await waiting(handshakes, "site-a")
        with pytest.raises(ResourceExhausted):
            await oldest
        assert not second.done() and not other.done()
        newest.queue.put_nowait(AgentHello("site-a"))  # the real agent's hello: it gets in
        assert await third == AgentHello("site-a")
        for task in (second, other):
            task.cancel()
        await asyncio.gather(second, other, return_exceptions=True)
        assert handshakes.waiting == 0

    asyncio.run(scenario())


def test_past_the_total_bound_a_new_stream_is_refused_at_once_until_some_drain() -> None:
    async def scenario() -> None:
        handshakes = Handshakes(deadline=30, per_agent=5, total=2)
        first, one = await waiting(handshakes, "site-a")
        _, two = await waiting(handshakes, "site-b")
        _, refused = await waiting(handshakes, "site-c")
        with pytest.raises(ResourceExhausted):
            await refused
        first.queue.put_nowait(AgentHello("site-a"))
        assert await one == AgentHello("site-a")
        again, accepted = await waiting(handshakes, "site-c")
        again.queue.put_nowait(AgentHello("site-c"))
        assert await accepted == AgentHello("site-c")
        two.cancel()
        await asyncio.gather(two, return_exceptions=True)
        assert handshakes.waiting == 0

    asyncio.run(scenario())
