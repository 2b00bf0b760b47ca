"""`florist-grpc agent`: the process on a data holder's machine that launches FL clients for the control plane."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.grpc_server import build_server
from florist_grpc.config import AgentSettings
from florist_grpc.net import join_host_port
from florist_grpc.proto.florist.v1 import client_agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import client_agent_service_pb2_grpc as pb_grpc


class Agent:
    """The agent process with `start()` / `stop()`; `port` is the bound port once started."""

    def __init__(self, settings: AgentSettings) -> None:
        self.port = 0
        self._settings = settings
        self._address = join_host_port(settings.host, settings.port)
        root = settings.data_root
        self._servicer = AgentServicer(
            root, settings.token, root.resolve() / ".florist-agent-logs", settings.timeouts.process_stop_grace_seconds
        )
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        # grpc.aio servers belong to the running event loop: build it here, not in __init__.
        server = build_server([])
        pb_grpc.add_ClientAgentServiceServicer_to_server(self._servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
        reflection.enable_server_reflection(
            (pb.DESCRIPTOR.services_by_name["ClientAgentService"].full_name, reflection.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self._address)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(self._settings.timeouts.shutdown_grace_seconds)
        await asyncio.to_thread(self._servicer.stop_all)
