"""AgentService.Tunnel joined end to end in one process: an FL client's socket on the agent's loopback listener
(agent/tunnels.py), a real grpc.aio server with the real AgentServicer (and auth), and a TCP "FL server" the
control plane joins. Bytes both ways, half-close both ways, flow control under a large payload, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from florist_grpc.agent.tunnels import Tunnels
from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.auth import AuthInterceptor, load_auth_file
from florist_grpc.api.token_table import TokenTable
from florist_grpc.config import Timeouts
from florist_grpc.domain.model import ProcessRef
from florist_grpc.launch.agents import Agents
from florist_grpc.net import split_host_port
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc
from tests.e2e.sites import sha

FLServer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Joined:
    agents: Agents
    address: str  # the control plane's
    fl_address: str  # the FL server's
    tunnels: Tunnels
    channel: grpc.aio.Channel
    tokens: TokenTable


@asynccontextmanager
async def joined(tmp_path: Path, fl_server: FLServer, token: str = "a-secret") -> AsyncIterator[Joined]:
    """A control plane (auth file: agent site-a, agent site-b, an admin) and an FL server; site-a's tunnels."""
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"agent {sha('a-secret')} site-a\nagent {sha('b-secret')} site-b\nadmin {sha('ad')} ops\n")
    tokens = TokenTable(load_auth_file(tokens_file))  # the tokens in force, as serve holds them
    agents = Agents("redis://127.0.0.1:1", Timeouts())  # no report is relayed here
    server = grpc.aio.server(interceptors=[AuthInterceptor(tokens)])
    pb_grpc.add_AgentServiceServicer_to_server(AgentServicer(agents, tokens, 5.0), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fl = await asyncio.start_server(fl_server, "127.0.0.1", 0)
    fl_address = f"127.0.0.1:{fl.sockets[0].getsockname()[1]}"
    tunnels = Tunnels("site-a", token, tmp_path)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    tunnels.channel = channel
    try:
        yield Joined(agents, f"127.0.0.1:{port}", fl_address, tunnels, channel, tokens)
    finally:
        await tunnels.close_all()
        await channel.close(None)
        fl.close()
        await server.stop(None)
        await agents.close()


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = split_host_port(address)
    return await asyncio.open_connection(host, port)


def test_bytes_travel_both_ways_and_half_close_ends_each_direction(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def fl_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the server")
        writer.write_eof()  # the server is done sending, and still reads (the eof message reaches the client)
        seen.append(await reader.read())  # everything up to the client's half-close
        writer.close()

    async def scenario() -> None:
        async with joined(tmp_path, fl_server) as j:
            j.agents.adopt("site-a", "c1", ProcessRef(), j.fl_address)
            reader, writer = await connect(await j.tunnels.open("c1"))
            assert await asyncio.wait_for(reader.read(), 10) == b"hello from the server"  # then EOF
            writer.write(b"sent after the server's half-close")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            for _ in range(200):  # bounded: the server's read ends with the client's half-close
                if seen:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert seen == [b"sent after the server's half-close"]


def test_a_changed_line_of_the_agents_token_leaves_its_tunnels_open(tmp_path: Path) -> None:
    """As its session stays (api/token_table.py), so do the FL connections of its running clients: a new project
    on a site's line must not cut the jobs it runs."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario() -> bytes:
        async with joined(tmp_path, echo) as j:
            j.agents.adopt("site-a", "c1", ProcessRef(), j.fl_address)
            reader, writer = await connect(await j.tunnels.open("c1"))
            writer.write(b"before")
            assert await asyncio.wait_for(reader.readexactly(6), 10) == b"before"
            changed = tmp_path / "changed"
            changed.write_text(f"agent {sha('a-secret')} site-a alpha\nadmin {sha('ad')} ops\n")
            j.tokens.replace(load_auth_file(changed))
            writer.write(b"after")
            try:
                return await asyncio.wait_for(reader.readexactly(5), 10)
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                return repr(exc).encode()
            finally:
                writer.close()

    assert asyncio.run(scenario()) == b"after"


def test_a_large_payload_is_flow_controlled_not_queued(tmp_path: Path) -> None:
    """The FL server does not read at first: the client's writes stall after a bounded amount (the sockets'
    and gRPC's windows), not after the whole payload; once it reads, every byte arrives, in order."""
    payload = os.urandom(1 << 20) * 96  # 96 MiB
    reading = asyncio.Event()
    received = hashlib.sha256()
    count = 0

    async def fl_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        await reading.wait()
        while data := await reader.read(1 << 20):
            received.update(data)
            count += len(data)
        writer.write(b"done")
        writer.close()

    async def scenario() -> int:
        async with joined(tmp_path, fl_server) as j:
            j.agents.adopt("site-a", "c1", ProcessRef(), j.fl_address)
            reader, writer = await connect(await j.tunnels.open("c1"))
            sent = 0
            step = 1 << 20
            while sent < len(payload):
                writer.write(payload[sent : sent + step])
                sent += step
                try:
                    await asyncio.wait_for(writer.drain(), 2.0)
                except TimeoutError:
                    break
            stalled_at = sent
            reading.set()
            writer.write(payload[sent:])
            await writer.drain()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 60) == b"done"
            writer.close()
            return stalled_at

    stalled_at = asyncio.run(scenario())
    print(f"stalled after {stalled_at >> 20} MiB")
    assert stalled_at < 48 * (1 << 20), f"{stalled_at} bytes were taken before the FL server read any"
    assert count == len(payload) and received.digest() == hashlib.sha256(payload).digest()


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed aio call (its google.rpc.Status rides the trailing metadata)."""
    metadata = error.trailing_metadata() or ()
    details = next((v for k, v in metadata if k == "grpc-status-details-bin"), None)
    assert isinstance(details, bytes), f"{error.code()} without google.rpc.Status details"
    for detail in status_pb2.Status.FromString(details).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"{error.code()} without ErrorInfo")


async def _refusal(j: Joined, first: pb.TunnelRequest, token: str = "a-secret") -> grpc.aio.AioRpcError:
    call = pb_grpc.AgentServiceStub(j.channel).Tunnel(metadata=(("authorization", f"Bearer {token}"),))  # type: ignore[call-arg]
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 10)
    return caught.value


def test_a_tunnel_for_a_client_not_launched_on_that_agent_is_refused(tmp_path: Path) -> None:
    async def fl_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("a refused tunnel reached the FL server")

    async def scenario() -> dict[str, grpc.aio.AioRpcError]:
        async with joined(tmp_path, fl_server) as j:
            j.agents.adopt("site-b", "theirs", ProcessRef(), j.fl_address)

            def opening(agent: str, client: str) -> pb.TunnelRequest:
                return pb.TunnelRequest(open=pb.TunnelOpen(agent=agent, client_uuid=client))

            return {
                "unknown": await _refusal(j, opening("site-a", "nobody")),
                "other agent's": await _refusal(j, opening("site-a", "theirs")),
                "posing as site-b": await _refusal(j, opening("site-b", "theirs")),
                "admin token": await _refusal(j, opening("site-b", "theirs"), token="ad"),
                "data first": await _refusal(j, pb.TunnelRequest(data=b"x")),
            }

    refused = asyncio.run(scenario())
    assert refused["unknown"].code() == grpc.StatusCode.NOT_FOUND
    assert error_info(refused["unknown"]).reason == "TUNNEL_UNKNOWN_CLIENT"
    assert error_info(refused["unknown"]).metadata["client_uuid"] == "nobody"
    assert refused["other agent's"].code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused["other agent's"]).reason == "TUNNEL_OTHER_AGENT"
    assert refused["posing as site-b"].code() == grpc.StatusCode.PERMISSION_DENIED
    assert "site-a" in (refused["posing as site-b"].details() or "")
    assert refused["admin token"].code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused["data first"].code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_refused_tunnel_resets_the_fl_clients_connection(tmp_path: Path) -> None:
    async def fl_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("a refused tunnel reached the FL server")

    async def scenario() -> None:
        async with joined(tmp_path, fl_server) as j:
            reader, writer = await connect(await j.tunnels.open("never-launched"))
            writer.write(b"x")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()

    asyncio.run(scenario())


def test_an_unreachable_fl_server_resets_the_connection(tmp_path: Path) -> None:
    async def fl_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def scenario() -> None:
        async with joined(tmp_path, fl_server) as j:
            j.agents.adopt("site-a", "c1", ProcessRef(), "127.0.0.1:1")  # nothing listens on port 1
            reader, writer = await connect(await j.tunnels.open("c1"))
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()

    asyncio.run(scenario())


def test_an_agent_restarted_on_the_same_data_root_listens_again_where_its_adopted_clients_expect_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[str, str, bool]:
        first = Tunnels("site-a", "", tmp_path)
        address = await first.open("running")
        await first.open("ended")
        await first.close_all()  # the agent is gone; its record stays, as after a SIGKILL
        again = Tunnels("site-a", "", tmp_path)
        await again.reopen(["running"])  # only the clients still running
        reopened = await again.open("running")  # already listening: the same address
        _, writer = await connect(address)
        writer.close()
        ended_listens = "ended" in json.loads((tmp_path / "tunnels.json").read_text())
        await again.close_all()
        return address, reopened, ended_listens

    address, reopened, ended_listens = asyncio.run(scenario())
    assert reopened == address and not ended_listens
