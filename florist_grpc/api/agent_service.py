"""florist.v1.ClientAgentService, served by `florist-grpc agent` (florist_grpc/agent.py) on a data holder's machine.

Every call must carry `authorization: Bearer $FLORIST_AGENT_TOKEN` (or the agent runs with --insecure-no-auth).
Data paths are confined to --data-root: the control plane cannot make an agent read any other file.
"""

from __future__ import annotations

import asyncio
import hmac
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from florist_grpc.api.errors import streaming, unary
from florist_grpc.domain.catalog import MODELS, OPTIMIZERS
from florist_grpc.domain.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from florist_grpc.domain.model import ProcessRef
from florist_grpc.fl.run_config import ClientRun, run_environment
from florist_grpc.launch import process
from florist_grpc.launch.agent_client import server_config_of
from florist_grpc.launch.logs import follow_log
from florist_grpc.proto.florist.v1 import client_agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import client_agent_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
STOP_GRACE_SECONDS = 5.0


@dataclass
class AgentClient:
    popen: subprocess.Popen[bytes]
    ref: ProcessRef


class AgentServicer(pb_grpc.ClientAgentServiceServicer):
    def __init__(self, data_root: Path, token: str, logs_dir: Path, stop_grace: float) -> None:
        self._stop_grace = stop_grace
        self._root = data_root.resolve()
        self._token = token
        self._logs = logs_dir
        self._clients: dict[str, AgentClient] = {}

    def _authenticate(self, context: Context) -> None:
        if not self._token:
            return
        metadata = dict(context.invocation_metadata() or ())
        header = str(metadata.get("authorization", ""))
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("missing 'authorization: Bearer TOKEN' metadata")
        if not hmac.compare_digest(header[7:].strip().encode(), self._token.encode()):
            raise Unauthenticated("wrong agent token")

    def _client(self, client_uuid: str) -> AgentClient:
        client = self._clients.get(client_uuid)
        if client is None:
            raise NotFound(f"no client {client_uuid} on this agent")
        return client

    def _data_path(self, data_path: str) -> Path:
        path = (self._root / data_path).resolve()
        if not path.is_relative_to(self._root):
            raise PermissionDenied(f"data_path {data_path!r} is outside this agent's data root")
        return path

    @unary
    async def StartClient(self, request: pb.StartClientRequest, context: Context) -> pb.StartClientResponse:
        self._authenticate(context)
        problems = []
        if not request.client_uuid.isalnum():
            problems.append(FieldViolation("client_uuid", "must be alphanumeric"))
        if request.model not in MODELS:
            problems.append(FieldViolation("model", f"unknown model {request.model!r}"))
        if request.optimizer not in OPTIMIZERS:
            problems.append(FieldViolation("optimizer", f"unknown optimizer {request.optimizer!r}"))
        if not request.data_path:
            problems.append(FieldViolation("data_path", "is required"))
        if problems:
            raise InvalidArgument(problems)
        if request.client_uuid in self._clients:
            existing = self._clients[request.client_uuid]
            return pb.StartClientResponse(pid=existing.ref.pid, log_path=existing.ref.log_path)  # idempotent retry
        run = ClientRun(
            server_address=request.server_address,
            redis_address=request.redis_address,
            uuid=request.client_uuid,
            model=request.model,
            optimizer=request.optimizer,
            client_type=request.client_type,
            data_path=str(self._data_path(request.data_path)),
            server_config=server_config_of(request),
            redis_username=request.redis_username,
            redis_password=request.redis_password,
        )
        popen, ref = await asyncio.to_thread(
            process.spawn,
            "florist_grpc.fl.client",
            [],
            self._logs / f"{request.client_uuid}.log",
            run_environment(run.to_json()),
        )
        self._clients[request.client_uuid] = AgentClient(popen, ref)
        return pb.StartClientResponse(pid=ref.pid, log_path=ref.log_path)

    @unary
    async def GetClientStatus(self, request: pb.GetClientStatusRequest, context: Context) -> pb.GetClientStatusResponse:
        self._authenticate(context)
        client = self._client(request.client_uuid)
        code = client.popen.poll()
        if code is None:
            return pb.GetClientStatusResponse(running=True)
        tail = process.log_tail(client.ref.log_path) if code != 0 else ""
        return pb.GetClientStatusResponse(running=False, exit_code=code, log_tail=tail)

    @unary
    async def StopClient(self, request: pb.StopClientRequest, context: Context) -> pb.StopClientResponse:
        self._authenticate(context)
        client = self._client(request.client_uuid)
        await asyncio.to_thread(process.terminate, [client.ref], STOP_GRACE_SECONDS, [client.popen])
        return pb.StopClientResponse()

    @streaming
    async def StreamClientLog(
        self, request: pb.StreamClientLogRequest, context: Context
    ) -> AsyncIterator[pb.StreamClientLogResponse]:
        self._authenticate(context)
        client = self._client(request.client_uuid)

        async def finished() -> bool:
            return client.popen.poll() is not None

        async for text, offset in follow_log(Path(client.ref.log_path), request.offset, request.follow, finished):
            yield pb.StreamClientLogResponse(text=text, next_offset=offset)

    def stop_all(self) -> None:
        refs = [c.ref for c in self._clients.values() if c.popen.poll() is None]
        process.terminate(refs, STOP_GRACE_SECONDS, [c.popen for c in self._clients.values()])
