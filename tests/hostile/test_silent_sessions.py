"""Connect streams that never say hello (issue 18, item 6): 500 of them, with a valid agent token, against a real
`florist-grpc serve`. Every one is closed within the hello deadline (10 s by default) and a margin -- those past
the bound on streams waiting under one agent name at once, at once (RESOURCE_EXHAUSTED) --; the control plane
logs the flood once per agent name and each deadline once; its sockets return to their count before the flood
and its memory does not grow with it; and the real agent of that name connects meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import grpc
import psutil

from florist_grpc.config import Timeouts
from florist_grpc.launch.handshakes import PER_AGENT
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from tests.e2e.conftest import Served, serve, stop
from tests.e2e.sites import AgentProcess, sha, start_agent
from tests.helpers import wait_for

STREAMS = 500
CHANNELS = 10  # HTTP/2 connections the streams share, as a client multiplexes them
DEADLINE = Timeouts().agent_hello_seconds
MARGIN = 5.0
# What the flood may leave behind in the control plane's RSS (allocator arenas, gRPC's own pools), far below what
# 500 sessions held open would take.
RSS_SLACK = 32 * 2**20


async def flood(address: str, token: str, opened: asyncio.Event) -> list[tuple[float, grpc.StatusCode]]:
    """Open STREAMS Connect streams that send nothing; (seconds until each ended, its code)."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    began = time.monotonic()

    async def one(i: int) -> tuple[float, grpc.StatusCode]:
        call = agent_grpc.AgentServiceStub(channels[i % CHANNELS]).Connect(
            metadata=(("authorization", f"Bearer {token}"),)
        )
        code = await call.code()
        return time.monotonic() - began, code

    try:
        calls = [asyncio.ensure_future(one(i)) for i in range(STREAMS)]
        opened.set()
        return await asyncio.wait_for(asyncio.gather(*calls), DEADLINE + MARGIN)
    finally:
        for channel in channels:
            await channel.close()


def sockets_of(process: psutil.Process) -> int:
    """How many sockets the process holds (its other descriptors, e.g. the store's connection per worker thread,
    vary with what its threads did, not with the streams)."""
    fd_dir = Path(f"/proc/{process.pid}/fd")
    links = []
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):  # closed while listed
            links.append(os.readlink(fd))
    return sum(link.startswith("socket:") for link in links)


def test_streams_that_never_say_hello_are_closed_within_the_deadline_and_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    site_root = tmp_path / "site-a"
    site_root.mkdir()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"agent {sha('a-secret')} site-a\nviewer {sha('look')} dash\n")
    served: Served = serve(tmp_path / "florist", "--auth-file", str(tokens), "--no-launcher-pool")
    agent: AgentProcess | None = None
    try:
        process = psutil.Process(served.process.pid)
        sockets, rss = sockets_of(process), process.memory_info().rss

        async def flood_and_connect() -> list[tuple[float, grpc.StatusCode]]:
            nonlocal agent
            opened = asyncio.Event()
            flooding = asyncio.ensure_future(flood(served.address, "a-secret", opened))
            await opened.wait()
            # The real agent of that name connects while the flood holds its streams open.
            agent = await asyncio.to_thread(
                start_agent, served.address, "site-a", site_root, "--no-launcher-pool", token="a-secret"
            )
            return await flooding

        ended = asyncio.run(flood_and_connect())
        assert agent is not None
        assert len(ended) == STREAMS
        assert max(seconds for seconds, _ in ended) <= DEADLINE + MARGIN
        codes = [code for _, code in ended]
        assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}, set(codes)
        assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) <= PER_AGENT + 1  # the agent's redial may be one
        assert agent.process.poll() is None  # connected, and still is
        with grpc.insecure_channel(served.address) as channel:
            listed = agent_grpc.AgentServiceStub(channel).ListAgents(
                agent_pb.ListAgentsRequest(), metadata=(("authorization", "Bearer look"),), timeout=10
            )
        assert [(a.name, a.connected) for a in listed.agents] == [("site-a", True)]
        assert agent.stop() == 0
        wait_for(lambda: sockets_of(process) <= sockets, 10, f"the control plane's sockets back to {sockets}")
        assert process.memory_info().rss <= rss + RSS_SLACK
    finally:
        if agent is not None:
            agent.stop()  # a no-op once stopped; stops it (and its site's Redis) if an assertion failed first
        assert stop(served) == 0
    log = (tmp_path / "florist-serve.log").read_text()
    assert log.count("waited for hello at once; closing the oldest") == 1, log[-3000:]
    assert 1 <= log.count("sent no hello: closed") <= PER_AGENT + 1
