"""What one accepted agent session does: answer the control plane's requests (launch, stop, check data, read a
log) and send, unasked, its clients' reports and exits and a heartbeat carrying the agent's health.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from florist_grpc.agent.clients import SiteClients
from florist_grpc.agent.reports import ReportRelay
from florist_grpc.config import AgentSettings
from florist_grpc.domain.errors import FloristError
from florist_grpc.launch.logs import follow_log
from florist_grpc.launch.probe import ProbeFailed
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.rpc_errors import CODES

# How often the agent looks at its client processes for exits (and at its own health, to report a change).
EXIT_POLL_SECONDS = 0.2


class Exchange:
    """What one accepted session does: answer requests, send reports and exits, heartbeat."""

    def __init__(
        self,
        clients: SiteClients,
        relay: ReportRelay,
        settings: AgentSettings,
        send: Callable[[pb.ConnectRequest], None],
        tasks: dict[str, asyncio.Task[Any]],
        health: Callable[[], str],
        said_problem: str,
    ) -> None:
        self._health = health  # the agent's problem now ('' = healthy)
        self._said_problem = said_problem  # the problem the control plane last heard (in hello, then heartbeats)
        self._clients = clients
        self._relay = relay
        self._settings = settings
        self._send = send
        self._tasks = tasks
        self._sent: dict[str, str] = {}  # the last report sent per client in this session

    async def _send_report(self, uuid: str) -> None:
        body = await self._relay.read(uuid)
        if body and body != self._sent.get(uuid):
            self._sent[uuid] = body
            self._send(pb.ConnectRequest(report_change=pb.ReportChange(client_uuid=uuid, report_json=body)))

    async def _send_exit(self, uuid: str) -> None:
        await self._send_report(uuid)  # its last report first: the control plane judges the exit by it
        fields = self._clients.exited(uuid)
        exited = pb.ProcessExited(
            client_uuid=uuid,
            exit_code=fields.code or 0,
            exit_code_known=fields.code is not None,
            log_tail=fields.log_tail,
        )
        self._send(pb.ConnectRequest(process_exited=exited))

    async def pump(self) -> None:
        """Everything known so far, then changes as they come; a heartbeat when idle."""
        self._relay.mark_changed(u.client_uuid for u in self._clients.known())
        for uuid in self._clients.ended():
            await self._send_exit(uuid)
        heartbeat_due = asyncio.get_running_loop().time() + self._settings.heartbeat_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                for uuid in await asyncio.wait_for(self._relay.changed(), EXIT_POLL_SECONDS):
                    await self._send_report(uuid)
            for uuid, _ in await asyncio.to_thread(self._clients.poll):
                await self._send_exit(uuid)
            now = asyncio.get_running_loop().time()
            if now >= heartbeat_due or self._health() != self._said_problem:  # a change is said at once
                heartbeat_due = now + self._settings.heartbeat_seconds
                self._said_problem = self._health()
                self._send(pb.ConnectRequest(heartbeat=pb.Heartbeat(problem=self._said_problem)))

    def _spawn(self, key: str, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    def handle(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "launch_client":
            self._spawn(message.launch_client.request_id, self._launch(message.launch_client))
        elif kind == "stop_client":
            self._spawn(f"stop {message.stop_client.client_uuid}", self._stop(message.stop_client.client_uuid))
        elif kind == "check_data":
            self._spawn(message.check_data.request_id, self._check_data(message.check_data))
        elif kind == "read_log":
            self._spawn(message.read_log.request_id, self._read_log(message.read_log))
        elif kind == "cancel_request":
            task = self._tasks.get(message.cancel_request.request_id)
            if task is not None:
                task.cancel()

    def _failed(self, request_id: str, exc: FloristError) -> None:
        code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), 13)
        failed = pb.RequestFailed(request_id=request_id, code=code, message=str(exc))
        self._send(pb.ConnectRequest(request_failed=failed))

    async def _launch(self, request: pb.LaunchClient) -> None:
        self._relay.follow([request.client_uuid])  # before it runs: its first report is not missed
        try:
            credentials = await asyncio.to_thread(self._relay.credentials, request.client_uuid)
            ref = await asyncio.to_thread(
                self._clients.launch, request, self._relay.address, credentials, self._settings.tls_ca
            )
        except FloristError as exc:
            self._failed(request.request_id, exc)
            return
        started = pb.ProcessStarted(
            request_id=request.request_id, client_uuid=request.client_uuid, pid=ref.pid, log_path=ref.log_path
        )
        self._send(pb.ConnectRequest(process_started=started))

    async def _stop(self, client_uuid: str) -> None:
        await asyncio.to_thread(self._clients.stop, client_uuid)

    async def _check_data(self, check: pb.CheckData) -> None:
        problem = self._clients.check(check.data_path)
        result = pb.DataCheckResult(request_id=check.request_id, ok=not problem, problem=problem)
        if check.probe and not problem:
            try:
                summary = await asyncio.to_thread(self._clients.probe, check.data_path, check.label_column)
                result.summary.update(summary)
            except ProbeFailed as exc:
                result.ok, result.problem = False, str(exc)
        self._send(pb.ConnectRequest(data_check_result=result))

    async def _read_log(self, request: pb.ReadLog) -> None:
        try:
            path = self._clients.log_path(request.client_uuid)
        except FloristError as exc:
            self._failed(request.request_id, exc)
            return

        async def finished() -> bool:
            return not self._clients.running(request.client_uuid)

        offset = request.offset
        async for text, offset in follow_log(path, request.offset, request.follow, finished):
            self._send(
                pb.ConnectRequest(log_chunk=pb.LogChunk(request_id=request.request_id, text=text, next_offset=offset))
            )
        self._send(
            pb.ConnectRequest(log_chunk=pb.LogChunk(request_id=request.request_id, next_offset=offset, end=True))
        )
