"""A tunnel that breaks names its agent's dropped connection as why its client lost its FL connection, until the
agent shows its connection is alive (it speaks on its session). On a loaded machine the session's own end can be
noticed seconds after the tunnel's: a silent, open session must not clear the reason (no Redis, no gRPC: the
session is plain asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from florist_grpc.config import Timeouts
from florist_grpc.domain.model import ProcessRef
from florist_grpc.launch import agents as agents_module
from florist_grpc.launch.agent_protocol import AgentHello, AgentMessage, Command, Heartbeat, KnownClient, ProcessExited
from florist_grpc.launch.agents import Agents

CUT = "lost its FL connection: agent site-a's connection to the control plane dropped"
CHECK_SECONDS = 0.02  # how often a broken tunnel's reason is looked at again, shortened for the test


async def until(condition: Callable[[], bool], what: str) -> None:
    async def polled() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(polled(), 10)
    assert condition(), what


class Session:
    """One Connect stream of agent site-a, fed by the test: what it `says`, then its end (`end`)."""

    def __init__(self, agents: Agents, hello: AgentHello) -> None:
        self.said: asyncio.Queue[AgentMessage | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[AgentMessage | None]:
            while (message := await self.said.get()) is not None:
                yield message

        async def write(_: Command) -> None:
            return None

        self.serving = asyncio.create_task(agents.serve(hello, requests(), write))

    def says(self, message: AgentMessage) -> None:
        self.said.put_nowait(message)

    async def end(self) -> None:
        self.said.put_nowait(None)
        await asyncio.wait_for(self.serving, 10)


async def with_session(scenario: Callable[[Agents, Session], Awaitable[None]]) -> None:
    agents = Agents("redis://127.0.0.1:1", Timeouts(agent_silence_seconds=60.0))
    session = Session(agents, AgentHello("site-a"))
    try:
        await until(lambda: any(a.connected for a in agents.list()), "the session is open")
        agents.adopt("site-a", "c1", ProcessRef(pid=1, log_path="", agent_address="site-a"))
        await scenario(agents, session)
    finally:
        await session.end()
        await agents.close()


@pytest.fixture(autouse=True)
def short_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents_module, "TUNNEL_BREAK_SECONDS", CHECK_SECONDS)


def test_a_silent_open_session_keeps_the_reason_until_its_agent_speaks() -> None:
    async def scenario(agents: Agents, session: Session) -> None:
        agents.tunnel_broke("site-a", "c1")
        assert agents.connection_lost("c1") == CUT
        # Ten checks' time with nothing heard from the agent: the reason stands (a fixed wait used to clear it).
        await asyncio.sleep(10 * CHECK_SECONDS)
        assert agents.connection_lost("c1") == CUT
        session.says(Heartbeat())  # the agent speaks: its connection is alive, only the tunnel ended
        await until(lambda: agents.connection_lost("c1") == "", "the reason cleared once the agent spoke")

    asyncio.run(with_session(scenario))


def test_a_session_that_ends_after_the_tunnel_keeps_the_reason() -> None:
    async def scenario(agents: Agents, session: Session) -> None:
        agents.tunnel_broke("site-a", "c1")
        await session.end()  # the session's end is noticed after the tunnel's
        await until(lambda: not any(a.connected for a in agents.list()), "the session ended")
        await asyncio.sleep(10 * CHECK_SECONDS)
        assert agents.connection_lost("c1") == CUT
        # The agent comes back and says the client failed meanwhile (its FL connection went with the agent's).
        again = Session(agents, AgentHello("site-a", clients=(KnownClient("c1", running=False, exit_code=1),)))
        again.says(ProcessExited("c1", 1, "Stream removed (Socket closed)"))
        await until(lambda: agents.exit_of("c1") is not None, "the client's exit heard")
        assert agents.connection_lost("c1") == CUT  # why it failed: its agent's connection dropped
        await again.end()

    asyncio.run(with_session(scenario))


def test_a_client_that_exits_while_its_agent_stays_connected_broke_its_own_tunnel() -> None:
    """A client that crashes breaks its tunnel (the agent's relay fails writing to its closed socket and cancels
    the call); its agent, still connected, then reports the exit: the client's own failure is why, not a drop."""

    async def scenario(agents: Agents, session: Session) -> None:
        agents.tunnel_broke("site-a", "c1")
        session.says(ProcessExited("c1", 1, "Traceback: boom"))
        await until(lambda: agents.exit_of("c1") is not None, "the client's exit heard")
        assert agents.connection_lost("c1") == ""

    asyncio.run(with_session(scenario))
