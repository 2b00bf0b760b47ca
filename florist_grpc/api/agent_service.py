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
from florist_grpc.domain.errors import PermissionDenied, Unauthenticated, quote
from florist_grpc.launch.agent_codec import command_to_proto, message_from_proto
from florist_grpc.launch.agent_protocol import AgentHello, AgentMessage, Command
from florist_grpc.launch.agents import Agents
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, agents: Agents, tokens: dict[str, Principal] | None, hello_seconds: float = 10.0) -> None:
        self._callers = Callers(tokens)
        self._agents = agents
        self._tokens = tokens  # None: no auth file (loopback dev mode), any agent name may connect
        self._hello_seconds = hello_seconds  # an agent sends hello at once; a caller that does not is refused

    # grpc.aio also serves a bidirectional method written as a coroutine that writes with context.write; the stubs
    # only know the generator form.
    @bidi
    async def Connect(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> None:
        requests = (message_from_proto(message) async for message in request_iterator)

        async def write(command: Command) -> None:
            await context.write(command_to_proto(command))

        first = await self._first(requests)
        self._admit(context, first)
        await self._agents.serve(first, requests, write)

    async def _first(self, requests: AsyncIterator[AgentMessage | None]) -> AgentMessage | None:
        try:
            return await asyncio.wait_for(anext(requests, None), self._hello_seconds)
        except TimeoutError:
            return None  # refused as a session without hello, once its token has been looked at

    def _admit(self, context: Context, first: AgentMessage | None) -> None:
        """Raise Unauthenticated / PermissionDenied unless the caller's token may open this agent's session;
        each refusal is logged once, with the name the agent gave, its address and why."""
        if self._tokens is None:
            return
        name = first.name if isinstance(first, AgentHello) else ""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        try:
            principal = authorize(self._tokens, AGENT_CONNECT, metadata)
            if principal is not None and name and principal.name != name:
                raise PermissionDenied(f"this token belongs to agent {principal.name!r}, not {quote(name)}")
        except (Unauthenticated, PermissionDenied) as exc:
            fields = {"agent": name, "peer": context.peer(), "reason": str(exc)}
            shown = quote(name) if name else "(no hello)"
            log.warning("refused agent %s from %s: %s", shown, fields["peer"], exc, extra=fields)
            raise

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
                )
                for a in shown
            ]
        )
