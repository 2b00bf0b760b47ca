"""florist.v1.AgentService: agents' sessions (Connect) and ListAgents. The work lives in launch/agents.py; a
session's messages are converted at the stream (launch/agent_codec.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from florist_grpc.api.auth import AGENT_CONNECT, Principal, authorize
from florist_grpc.api.callers import Callers
from florist_grpc.api.convert import timestamp
from florist_grpc.api.errors import bidi, unary
from florist_grpc.domain.errors import (
    DeadlineExceeded,
    FloristError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    quote,
)
from florist_grpc.launch.agent_codec import command_to_proto, message_from_proto
from florist_grpc.launch.agent_protocol import AgentHello, Command
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.handshakes import Handshakes
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


# The key under which streams with a refused token wait for their hello (read only to log the name it gives).
REFUSED = "(refused token)"


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, agents: Agents, tokens: dict[str, Principal] | None, hello_seconds: float) -> None:
        self._callers = Callers(tokens)
        self._agents = agents
        self._tokens = tokens  # None: no auth file (loopback dev mode), any agent name may connect
        self._handshakes = Handshakes(hello_seconds)  # the hello deadline, and how many streams may wait for theirs

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

    def _identify(self, context: Context) -> tuple[Principal | None, FloristError | None]:
        """The caller's principal (None without an auth file), or why its token is refused: known before any
        message, so that the hello's wait is counted under the agent the token belongs to."""
        if self._tokens is None:
            return None, None
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        try:
            return authorize(self._tokens, AGENT_CONNECT, metadata), None
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
                )
                for a in shown
            ]
        )
