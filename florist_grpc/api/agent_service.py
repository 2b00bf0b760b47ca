"""florist.v1.AgentService: agents' sessions (Connect) and ListAgents. The work lives in launch/agents.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from florist_grpc.api.auth import Principal, authorize
from florist_grpc.api.convert import timestamp
from florist_grpc.api.errors import abort, unary
from florist_grpc.domain.errors import FloristError
from florist_grpc.launch.agents import Agents
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc
from florist_grpc.rpc_errors import internal_status, to_status

Context = grpc.aio.ServicerContext[Any, Any]


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, agents: Agents, tokens: dict[str, Principal] | None) -> None:
        self._agents = agents
        self._tokens = tokens  # None: no auth file (loopback dev mode), any agent name may connect

    def _bound_name(self, context: Context) -> str | None:
        if self._tokens is None:
            return None
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        principal = authorize(self._tokens, "/florist.v1.AgentService/Connect", metadata)
        return principal.name if principal else None

    # grpc.aio also serves a bidirectional method written as a coroutine that writes with context.write; the stubs
    # only know the generator form.
    async def Connect(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> None:
        try:
            await self._agents.serve(self._bound_name(context), request_iterator, context.write)
            return
        except FloristError as exc:
            status = to_status(exc)
        except Exception as exc:
            status = internal_status(exc)
        await abort(context, status)

    @unary
    async def ListAgents(self, request: pb.ListAgentsRequest, context: Context) -> pb.ListAgentsResponse:
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
                )
                for a in self._agents.list()
            ]
        )
