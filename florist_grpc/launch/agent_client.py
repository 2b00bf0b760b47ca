"""The control plane's side of `florist-grpc agent`: launching and following FL clients on other machines."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator

import grpc
from google.protobuf import json_format, struct_pb2

from florist_grpc.domain.errors import DeadlineExceeded, FailedPrecondition, NotFound, Unavailable
from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.proto.florist.v1 import client_agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import client_agent_service_pb2_grpc as pb_grpc
from florist_grpc.rpc_errors import from_rpc_error

log = logging.getLogger(__name__)


class AgentProcess:
    """A client process run by an agent. Calls are synchronous with a deadline: used from the follower threads."""

    def __init__(
        self,
        stub: pb_grpc.ClientAgentServiceStub,
        metadata: tuple[tuple[str, str], ...],
        client_uuid: str,
        ref: ProcessRef,
        timeout: float,
    ) -> None:
        self.ref = ref
        self._stub = stub
        self._metadata = metadata
        self._uuid = client_uuid
        self._timeout = timeout
        self._tail = ""

    def poll(self) -> Exit | None:
        try:
            status = self._stub.GetClientStatus(
                pb.GetClientStatusRequest(client_uuid=self._uuid), timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if isinstance(from_rpc_error(exc), NotFound):
                return Exit(None)  # the agent restarted and no longer knows the process
            log.warning("agent %s unreachable while polling client %s: %s", self.ref.agent_address, self._uuid, exc)
            return None
        if status.running:
            return None
        self._tail = status.log_tail
        return Exit(status.exit_code)

    def terminate(self) -> None:
        try:
            self._stub.StopClient(
                pb.StopClientRequest(client_uuid=self._uuid), timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            log.warning("agent %s could not stop client %s: %s", self.ref.agent_address, self._uuid, exc)

    def kill(self) -> None:
        self.terminate()  # the agent escalates to SIGKILL itself after its grace period

    def log_tail(self) -> str:
        return self._tail


class AgentClients:
    """One channel per agent address, authenticated with FLORIST_AGENT_TOKEN."""

    def __init__(self, token: str, timeout: float, root_certificates: bytes | None = None) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._root_certificates = root_certificates
        self._lock = threading.Lock()
        self._stubs: dict[str, pb_grpc.ClientAgentServiceStub] = {}
        self._channels: list[grpc.Channel] = []

    def _stub(self, address: str) -> pb_grpc.ClientAgentServiceStub:
        with self._lock:
            stub = self._stubs.get(address)
            if stub is None:
                channel = (
                    grpc.secure_channel(address, grpc.ssl_channel_credentials(self._root_certificates))
                    if self._root_certificates
                    else grpc.insecure_channel(address)
                )
                self._channels.append(channel)
                stub = self._stubs[address] = pb_grpc.ClientAgentServiceStub(channel)
            return stub

    async def start_client(self, address: str, run: ClientRun) -> AgentProcess:
        config = struct_pb2.Struct()
        json_format.ParseDict(run.server_config, config)
        request = pb.StartClientRequest(
            client_uuid=run.uuid,
            server_address=run.server_address,
            redis_address=run.redis_address,
            data_path=run.data_path,
            model=run.model,
            optimizer=run.optimizer,
            client_type=run.client_type,
            server_config=config,
            redis_username=run.redis_username,
            redis_password=run.redis_password,
        )
        stub = self._stub(address)
        try:
            response = await asyncio.to_thread(
                stub.StartClient, request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            if isinstance(error, Unavailable | DeadlineExceeded):
                raise Unavailable(f"agent {address} unreachable: {error}") from exc
            raise FailedPrecondition(f"agent {address} refused to start the client: {error}") from exc
        ref = ProcessRef(pid=response.pid, log_path=response.log_path, agent_address=address)
        return AgentProcess(stub, self._metadata, run.uuid, ref, self._timeout)

    async def stream_log(
        self, address: str, client_uuid: str, offset: int, follow: bool
    ) -> AsyncIterator[tuple[str, int]]:
        """A client's log as the agent serves it, chunk by chunk: (text, next_offset)."""
        request = pb.StreamClientLogRequest(client_uuid=client_uuid, offset=offset, follow=follow)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.ClientAgentServiceStub(channel)
            try:
                async for chunk in stub.StreamClientLog(request, metadata=self._metadata):
                    yield chunk.text, chunk.next_offset
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if isinstance(error, Unavailable):
                    raise Unavailable(f"agent {address} unreachable: {error}") from exc
                raise FailedPrecondition(f"agent {address}: {error}") from exc

    def adopt(self, address: str, client_uuid: str, ref: ProcessRef) -> AgentProcess:
        return AgentProcess(self._stub(address), self._metadata, client_uuid, ref, self._timeout)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def server_config_of(request: pb.StartClientRequest) -> dict[str, object]:
    config: dict[str, object] = json.loads(json_format.MessageToJson(request.server_config))
    return config
