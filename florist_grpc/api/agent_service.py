"""florist.v1.AgentService: agents' sessions (Connect) and ListAgents. The work lives in launch/agents.py; a
session's messages are converted at the stream (launch/agent_codec.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from florist_grpc.api.auth import AGENT_CONNECT, Principal, authorize
from florist_grpc.api.callers import Callers
from florist_grpc.api.convert import timestamp
from florist_grpc.api.errors import bidi, unary
from florist_grpc.api.token_table import TokenTable
from florist_grpc.domain.errors import (
    DeadlineExceeded,
    FieldViolation,
    FloristError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    quote,
)
from florist_grpc.launch.agent_codec import command_to_proto, message_from_proto
from florist_grpc.launch.agent_protocol import AgentHello, Command
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.handshakes import Handshakes
from florist_grpc.launch.tunnel_relay import join
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


# The key under which streams with a refused token wait for their hello (read only to log the name it gives).
REFUSED = "(refused token)"


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, agents: Agents, table: TokenTable, hello_seconds: float) -> None:
        self._callers = Callers(table)
        self._agents = agents
        self._table = table  # its tokens None: no auth file (loopback dev mode), any agent name may connect
        self._handshakes = Handshakes(hello_seconds)  # the hello deadline, and how many streams may wait for theirs
        self._hello_seconds = hello_seconds  # also the bound for a tunnel's first message, and its FL connect

    # grpc.aio also serves a bidirectional method written as a coroutine that writes with context.write; the stubs
    # only know the generator form.
    @bidi
    async def Connect(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> None:
        requests = (message_from_proto(message) async for message in request_iterator)

        async def write(command: Command) -> None:
            await context.write(command_to_proto(command))

        principal, refusal = self._identify(context)
        name = principal.name if principal is not None else ""
        try:
            first = await self._handshakes.hello(REFUSED if refusal else name, requests)
        except (DeadlineExceeded, ResourceExhausted) as exc:
            if refusal is not None:
                raise self._refused(context, "", refusal) from None
            if isinstance(exc, DeadlineExceeded):
                shown = f"agent {name}" if name else "an agent"
                log.warning("a session of %s from %s sent no hello: closed (%s)", shown, context.peer(), exc)
            raise
        hello_name = first.name if isinstance(first, AgentHello) else ""
        if refusal is not None:
            raise self._refused(context, hello_name, refusal)
        if principal is not None and hello_name and principal.name != hello_name:
            denied = PermissionDenied(f"this token belongs to agent {principal.name!r}, not {quote(hello_name)}")
            raise self._refused(context, hello_name, denied)
        await self._agents.serve(first, requests, write)

    @bidi
    async def Tunnel(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.TunnelRequest], context: Context
    ) -> None:
        # The token is an agent's (checked by the auth interceptor, as for every method but Connect); the client
        # must be one launched on that very agent.
        principal, refusal = self._identify(context)
        if refusal is not None:
            raise refusal
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator), None), self._hello_seconds)
        except TimeoutError:
            raise DeadlineExceeded(f"a tunnel sent no open within {self._hello_seconds:g}s") from None
        if first is None or first.WhichOneof("message") != "open":
            raise InvalidArgument([FieldViolation("open", "the first message of a tunnel must be open")])
        opened = first.open
        if principal is not None and principal.name != opened.agent:
            raise PermissionDenied(f"this token belongs to agent {principal.name!r}, not {quote(opened.agent)}")
        host, port = self._agents.tunnel_target(opened.agent, opened.client_uuid)
        carried = [0, 0]  # bytes from the client, bytes from the server

        async def received() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("message") != "data":
                    raise InvalidArgument([FieldViolation("open", "a tunnel is opened once, by its first message")])
                carried[0] += len(message.data)
                yield message.data

        async def send(data: bytes) -> None:
            carried[1] += len(data)
            await context.write(pb.TunnelResponse(data=data))

        async def send_eof() -> None:
            await context.write(pb.TunnelResponse(eof=True))

        log.info("agent %s: client %s's FL connection joined to %s:%d", opened.agent, opened.client_uuid, host, port)
        try:
            await join(host, port, self._hello_seconds, received(), send, send_eof)
            log.info(
                "agent %s: client %s's FL connection ended (%d bytes up, %d down)",
                opened.agent,
                opened.client_uuid,
                *carried,
            )
        except asyncio.CancelledError:
            self._agents.tunnel_broke(opened.agent, opened.client_uuid)  # the agent's side went away
            raise
        except (OSError, TimeoutError) as exc:
            where = f"agent {opened.agent}'s client {opened.client_uuid}"
            failed = f"the FL connection of {where} to its FL server failed (or could not open): {exc!r}"
            raise Unavailable(failed, reason="FL_CONNECTION_FAILED") from None

    def _identify(self, context: Context) -> tuple[Principal | None, FloristError | None]:
        """The caller's principal (None without an auth file), or why its token is refused: known before any
        message, so that the hello's wait is counted under the agent the token belongs to."""
        tokens = self._table.tokens
        if tokens is None:
            return None, None
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        try:
            return authorize(tokens, AGENT_CONNECT, metadata), None
        except (Unauthenticated, PermissionDenied) as exc:
            return None, exc

    def _refused(self, context: Context, name: str, refusal: FloristError) -> FloristError:
        """`refusal`, logged once with the name the agent gave (if its hello came), its address and why."""
        fields = {"agent": name, "peer": context.peer(), "reason": str(refusal)}
        shown = quote(name) if name else "(no hello)"
        log.warning("refused agent %s from %s: %s", shown, fields["peer"], refusal, extra=fields)
        return refusal

    @unary
    async def ListAgents(self, request: pb.ListAgentsRequest, context: Context) -> pb.ListAgentsResponse:
        # A caller sees the sites that may run jobs of its projects (a team does not see another team's sites).
        caller = self._callers.of(context)
        shown = [
            a for a in self._agents.list() if (p := self._callers.site_projects(a.name)) and p.overlaps(caller.projects)
        ]
        return pb.ListAgentsResponse(
            agents=[
                pb.AgentInfo(
                    name=a.name,
                    connected=a.connected,
                    connect_time=timestamp(a.connect_time),
                    last_seen_time=timestamp(a.last_seen),
                    devices=list(a.devices),
                    version=a.version,
                    data_root=a.data_root,
                    problem=a.problem,
                    max_clients=a.max_clients,
                    allowed_projects=a.policy.projects,
                    allowed_models=a.policy.models,
                )
                for a in shown
            ]
        )
