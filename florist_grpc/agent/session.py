"""The agent's one outbound session (AgentService.Connect) and its reconnects.

After every (re)connect the agent says hello (with every client it knows), then sends the latest report of each
client and the exits of those that ended, in that order: a client's last report always reaches the control plane
before its exit. Reconnects back off exponentially, with jitter, up to a bound (as Flower's SuperNode retries its
SuperLink), so a control plane restart is not met by every site at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

import florist_grpc
from florist_grpc.agent.clients import SiteClients
from florist_grpc.agent.devices import probe_devices
from florist_grpc.agent.reports import ReportRelay
from florist_grpc.config import AgentSettings
from florist_grpc.domain.errors import FloristError
from florist_grpc.launch.logs import follow_log
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.launch.probe import ProbeFailed
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc
from florist_grpc.rpc_errors import CODES

log = logging.getLogger(__name__)
ready = logging.getLogger("florist_grpc.ready")  # printed on stdout by the CLI (cli/log_setup.py), as text or JSON

# How often the agent looks at its client processes for exits.
EXIT_POLL_SECONDS = 0.2
# Keepalive pings find a dead control plane (or a dead NAT mapping) while the stream is idle; the control plane
# accepts pings every 10 s or slower (api/grpc_server.py).
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000)]


class Replaced(Exception):
    """Another agent connected under our name: two agents must not share one."""


class Agent:
    def __init__(self, settings: AgentSettings, on_connected: Callable[[], None] = lambda: None) -> None:
        self._settings = settings
        self._on_connected = on_connected
        state_dir = settings.data_root / ".florist-agent"
        state_dir.mkdir(parents=True, exist_ok=True)
        timeouts = settings.timeouts
        # One launcher pool per host, as on the control plane: clients and data probes fork from it.
        self._pool = LauncherPool(state_dir / "launcher-pool.log", timeouts) if settings.launcher_pool else None
        self._clients = SiteClients(
            settings.data_root, state_dir, timeouts.process_stop_grace_seconds, timeouts.data_check_seconds, self._pool
        )
        self._relay = ReportRelay(state_dir, settings.timeouts)
        self._devices: list[str] = []

    async def start(self) -> None:
        if self._pool is not None:
            self._pool.start()  # returns at once: it imports torch and Flower while the session comes up
        adopted = self._clients.adopt_recorded()
        await asyncio.to_thread(self._relay.start, adopted)
        self._devices = await asyncio.to_thread(probe_devices)

    async def run(self) -> None:
        """Keep a session open until cancelled; raises Replaced when another agent took our name."""
        attempt = 0
        while True:
            try:
                async for _ in self._session():
                    attempt = 0  # connected: the next failure starts the backoff afresh
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    raise Replaced(exc.details() or "replaced") from exc
                log.warning("session to %s failed: %s %s", self._settings.control_plane, exc.code().name, exc.details())
            except (OSError, FloristError, grpc.RpcError) as exc:
                log.warning("session to %s failed: %s", self._settings.control_plane, exc)
            bound = min(self._settings.reconnect_max_seconds, self._settings.reconnect_min_seconds * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(bound / 2, bound))  # backoff before redialling

    async def stop(self) -> None:
        await asyncio.to_thread(self._clients.stop_all)
        await asyncio.to_thread(self._relay.stop)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.stop)

    def _channel(self) -> grpc.aio.Channel:
        s = self._settings
        if s.tls_ca is None:
            return grpc.aio.insecure_channel(s.control_plane, options=CHANNEL_OPTIONS)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=s.tls_ca.read_bytes(),
            private_key=s.tls_key.read_bytes() if s.tls_key else None,
            certificate_chain=s.tls_cert.read_bytes() if s.tls_cert else None,
        )
        return grpc.aio.secure_channel(s.control_plane, credentials, options=CHANNEL_OPTIONS)

    async def _session(self) -> AsyncIterator[None]:
        """One session; yields once it is accepted."""
        outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        hello = pb.AgentHello(
            name=self._settings.name,
            version=florist_grpc.__version__,
            devices=self._devices,
            data_root=str(self._clients.root),
            clients=self._clients.known(),
        )
        outbox.put_nowait(pb.ConnectRequest(hello=hello))

        async def requests() -> AsyncIterator[pb.ConnectRequest]:
            while True:
                yield await outbox.get()

        metadata = (("authorization", f"Bearer {self._settings.token}"),) if self._settings.token else ()
        tasks: dict[str, asyncio.Task[Any]] = {}
        async with self._channel() as channel:
            call = pb_grpc.AgentServiceStub(channel).Connect(requests(), metadata=metadata)
            try:
                first = await call.read()
                if not isinstance(first, pb.ConnectResponse) or not first.HasField("welcome"):
                    return  # the control plane ended the session before accepting it
                name, address = self._settings.name, self._settings.control_plane
                ready.info("florist-grpc agent %s connected to %s", name, address, extra={"agent": name})
                self._on_connected()
                yield
                session = _Session(self._clients, self._relay, self._settings, outbox.put_nowait, tasks)
                tasks["~pump"] = asyncio.create_task(session.pump())
                while isinstance(message := await call.read(), pb.ConnectResponse):
                    session.handle(message)
            finally:
                for task in tasks.values():
                    task.cancel()
                call.cancel()


class _Session:
    """What one accepted session does: answer requests, send reports and exits, heartbeat."""

    def __init__(
        self,
        clients: SiteClients,
        relay: ReportRelay,
        settings: AgentSettings,
        send: Callable[[pb.ConnectRequest], None],
        tasks: dict[str, asyncio.Task[Any]],
    ) -> None:
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
            if asyncio.get_running_loop().time() >= heartbeat_due:
                heartbeat_due += self._settings.heartbeat_seconds
                self._send(pb.ConnectRequest(heartbeat=pb.Heartbeat()))

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
