"""The agent's one outbound session (AgentService.Connect) and its reconnects.

After every (re)connect the agent says hello (with every client it knows, and its health), then sends the latest
report of each client and the exits of those that ended, in that order: a client's last report always reaches
the control plane before its exit. Reconnects back off exponentially, with jitter, up to a bound (as Flower's
SuperNode retries its SuperLink), so a control plane restart is not met by every site at once. A refusal
(UNAUTHENTICATED, PERMISSION_DENIED) is not retried: another try with the same token cannot succeed.

One agent per data root (a lock, as `serve` locks its data dir): a second one would adopt the first one's Redis
and clients, and stop that Redis when it exits.
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
from florist_grpc.agent.audit import THE_AGENT, AuditLog
from florist_grpc.agent.clients import SiteClients
from florist_grpc.agent.devices import probe_devices
from florist_grpc.agent.exchange import Exchange
from florist_grpc.agent.reports import SiteReports
from florist_grpc.agent.tunnels import Tunnels
from florist_grpc.config import AgentSettings
from florist_grpc.domain.errors import FloristError
from florist_grpc.launch.agent_codec import command_from_proto, message_to_proto
from florist_grpc.launch.agent_protocol import AgentHello, AgentMessage, Welcome
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc
from florist_grpc.reloading import Reloadable, poll
from florist_grpc.startup import step
from florist_grpc.store.data_dir_lock import DataDirLock
from florist_grpc.tls_files import TlsMaterial, read_tls

log = logging.getLogger(__name__)
ready = logging.getLogger("florist_grpc.ready")  # printed on stdout by the CLI (cli/log_setup.py), as text or JSON

# Keepalive pings find a dead control plane (or a dead NAT mapping) while the stream is idle; the control plane
# accepts pings every 10 s or slower (api/grpc_server.py).
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000)]
# The control plane's answers that redialling with the same token cannot change.
REFUSALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


class Replaced(Exception):
    """Another agent connected under our name: two agents must not share one."""


class Refused(Exception):
    """The control plane refused this agent (its token is missing, unknown, or bound to another name)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


def describe_plainly(exc: grpc.RpcError) -> str:
    """`CODE details` of a failed call (the CLI passes its own description, with its hints)."""
    if isinstance(exc, grpc.Call):
        return f"{exc.code().name} {exc.details()}"
    return str(exc)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        on_connected: Callable[[], None] = lambda: None,
        describe_failure: Callable[[grpc.RpcError], str] = describe_plainly,
    ) -> None:
        self._settings = settings
        self._on_connected = on_connected
        self._describe_failure = describe_failure
        state_dir = settings.data_root / ".florist-agent"
        state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DataDirLock(state_dir, "agent", f"data root {settings.data_root}")
        timeouts = settings.timeouts
        # One launcher pool per host, as on the control plane: clients and data probes fork from it.
        self._pool = LauncherPool(state_dir / "launcher-pool.log", timeouts) if settings.launcher_pool else None
        self._clients = SiteClients(
            settings.data_root, state_dir, timeouts.process_stop_grace_seconds, timeouts.data_check_seconds, self._pool
        )
        self._reports = SiteReports(state_dir, settings.timeouts, settings.limits)
        # FL traffic over the session (agent/tunnels.py); None with --fl-direct.
        self._tunnels = None if settings.fl_direct else Tunnels(settings.name, settings.token, state_dir)
        self._audit = AuditLog(settings.name, settings.audit_log or state_dir / "audit.jsonl")
        self._devices: list[str] = []
        self._started: contextlib.AsyncExitStack | None = None  # what stop() undoes, in reverse order
        self._leave_clients = True  # a failed start leaves the clients it adopted (and their Redis) running
        self.problem = ""  # why this agent cannot run clients now ('' = healthy), as hello and heartbeats say
        self._failures = 0  # consecutive failed sessions
        # --tls-ca/--tls-cert/--tls-key as last read well: each dial uses them; renewed files are read again.
        self._tls: Reloadable[TlsMaterial] | None = None
        self._last_failure = ""

    async def start(self) -> None:
        """Lock the data root, start the launcher pool and the site's Redis (adopting the clients and the Redis a
        previous agent left running). A start that fails stops what it had started and raises StartFailed."""
        async with contextlib.AsyncExitStack() as started:
            self._lock.acquire()  # first: names the agent holding it, before anything in the data root is touched
            started.callback(self._lock.release)
            self._audit.open()
            started.callback(self._audit.close)
            s = self._settings
            if s.tls_ca is not None:
                with step(f"reading --tls-ca {s.tls_ca}" + (f" and --tls-cert {s.tls_cert}" if s.tls_cert else "")):
                    self._tls = Reloadable(
                        "--tls-ca / --tls-cert / --tls-key",
                        [p for p in (s.tls_ca, s.tls_cert, s.tls_key) if p is not None],
                        lambda: read_tls(s.tls_cert, s.tls_key, s.tls_ca),
                    )
            if self._pool is not None:
                with step("starting the launcher pool"):
                    self._pool.start()  # returns at once: it imports torch and Flower while the session comes up
                started.push_async_callback(asyncio.to_thread, self._pool.stop)
            adopted = self._clients.adopt_recorded()
            if self._tunnels is not None:
                started.push_async_callback(self._tunnels.close_all)
                await self._tunnels.reopen([u.client_uuid for u in self._clients.known() if u.running])
            started.push_async_callback(self._stop_reports)
            with step(f"starting the agent's Redis in {self._reports.redis_dir}"):
                await asyncio.to_thread(self._reports.start, adopted)
            self.problem = await asyncio.to_thread(self._reports.health)
            self._devices = await asyncio.to_thread(probe_devices)
            started.push_async_callback(self._stop_clients)  # not after a failed start: the next agent adopts them
            self._started = started.pop_all()

    async def run(self) -> None:
        """Keep a session open until cancelled; raises Replaced when another agent took our name, Refused when the
        control plane refuses this agent."""
        health = asyncio.create_task(self._watch_health())
        seconds = self._settings.timeouts.file_reload_seconds
        files = asyncio.create_task(poll([self._tls], seconds)) if self._tls is not None else None
        try:
            await self._keep_connected()
        finally:
            health.cancel()
            if files is not None:
                files.cancel()

    def reload(self) -> None:
        """Read the TLS files again now (SIGHUP): the next dial uses them; the open session keeps its connection."""
        if self._tls is not None:
            self._tls.check(force=True)

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            try:
                async for _ in self._session():
                    attempt, self._failures, self._last_failure = 0, 0, ""  # the next failure is news again
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    raise Replaced(exc.details() or "replaced") from exc
                if exc.code() in REFUSALS:
                    raise Refused(exc.code(), exc.details() or "") from exc
                self._log_failure(self._describe_failure(exc))
            except (OSError, FloristError, grpc.RpcError) as exc:
                self._log_failure(str(exc))
            bound = min(self._settings.reconnect_max_seconds, self._settings.reconnect_min_seconds * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(bound / 2, bound))  # backoff before redialling

    def _log_failure(self, text: str) -> None:
        """A failure is logged when it is new; the same one again only after 2, 4, 8, ... attempts (not one line
        every few seconds for as long as the control plane is away)."""
        self._failures += 1
        text = " ".join(text.split())  # one line, hints included
        if text != self._last_failure or self._failures & (self._failures - 1) == 0:
            again = f" ({self._failures} attempts)" if self._failures > 1 else ""
            log.warning("session to %s failed%s: %s", self._settings.control_plane, again, text)
        self._last_failure = text

    async def _watch_health(self) -> None:
        """Supervise the site's Redis (restarted when it dies) and keep `problem` current."""
        while True:
            await asyncio.sleep(self._settings.timeouts.health_check_seconds)
            problem = await asyncio.to_thread(self._reports.health)
            if problem != self.problem:
                if problem:
                    log.warning("unhealthy: %s", problem)
                else:
                    log.info("healthy again")
                self.problem = problem

    async def stop(self, leave_clients: bool = False) -> None:
        """Stop the clients, the site's Redis and the launcher pool, and release the data root. `leave_clients`
        (an agent ending unasked, e.g. refused): clients still running keep running, and so does the Redis they
        report to, for the next agent on this data root to adopt."""
        self._leave_clients = leave_clients
        started, self._started = self._started, None
        if started is not None:
            await started.aclose()

    async def _stop_clients(self) -> None:
        if not self._leave_clients:
            running = self._clients.running_uuids()
            await asyncio.to_thread(self._clients.stop_all)
            for client_uuid in running:
                job = self._clients.job_of(client_uuid)
                self._audit.record("stop", job, "ok", client=client_uuid, who=THE_AGENT, reason="the agent stopped")

    async def _stop_reports(self) -> None:
        keep = self._leave_clients and self._clients.any_running()
        await asyncio.to_thread(self._reports.stop, keep)

    def _channel(self) -> grpc.aio.Channel:
        s = self._settings
        if self._tls is None:
            return grpc.aio.insecure_channel(s.control_plane, options=CHANNEL_OPTIONS)
        tls = self._tls.current
        credentials = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert_chain)
        return grpc.aio.secure_channel(s.control_plane, credentials, options=CHANNEL_OPTIONS)

    async def _session(self) -> AsyncIterator[None]:
        """One session; yields once it is accepted."""
        outbox: asyncio.Queue[AgentMessage | None] = asyncio.Queue()
        hello = AgentHello(
            name=self._settings.name,
            version=florist_grpc.__version__,
            devices=tuple(self._devices),
            data_root=str(self._clients.root),
            clients=tuple(self._clients.known()),
            problem=self.problem,
            max_clients=self._settings.max_clients,
            fl_direct=self._settings.fl_direct,
            allowed_projects=self._settings.policy.projects,
            allowed_models=self._settings.policy.models,
        )
        outbox.put_nowait(hello)

        async def requests() -> AsyncIterator[pb.ConnectRequest]:
            while (message := await outbox.get()) is not None:
                yield message_to_proto(message)

        metadata = (("authorization", f"Bearer {self._settings.token}"),) if self._settings.token else ()
        tasks: dict[str, asyncio.Task[Any]] = {}
        async with self._channel() as channel:
            call = pb_grpc.AgentServiceStub(channel).Connect(requests(), metadata=metadata)
            try:
                first = await call.read()
                if not isinstance(first, pb.ConnectResponse) or not isinstance(command_from_proto(first), Welcome):
                    return  # the control plane ended the session before accepting it
                name, address = self._settings.name, self._settings.control_plane
                ready.info("florist-grpc agent %s connected to %s", name, address, extra={"agent": name})
                self._on_connected()
                if self._tunnels is not None:
                    self._tunnels.channel = channel
                yield
                exchange = Exchange(
                    self._clients,
                    self._reports,
                    self._settings,
                    outbox.put_nowait,
                    tasks,
                    lambda: self.problem,
                    hello.problem,
                    self._audit,
                    self._tunnels,
                )
                tasks["~pump"] = asyncio.create_task(exchange.pump())
                while isinstance(message := await call.read(), pb.ConnectResponse):
                    if (command := command_from_proto(message)) is not None:
                        exchange.handle(command)
            finally:
                if self._tunnels is not None:
                    self._tunnels.channel = None  # closing the channel ends the tunnels riding it
                for task in tasks.values():
                    task.cancel()
                # Ends the request stream: gRPC's task reading it would otherwise wait on the outbox forever (a
                # call that ended with an error does not cancel it), and be destroyed pending at exit.
                outbox.put_nowait(None)
                call.cancel()
