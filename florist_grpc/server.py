"""Builds and runs the control plane: the grpc.aio server with its services, health, reflection, interceptors,
TLS, and the background machinery (store, Redis, follower) with an orderly shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.audit import AuditInterceptor
from florist_grpc.api.auth import AuthInterceptor
from florist_grpc.api.callers import Callers
from florist_grpc.api.catalog_service import CatalogServicer
from florist_grpc.api.grpc_server import add_port, build_server
from florist_grpc.api.health_watch import HealthWatch
from florist_grpc.api.http_server import DashboardServer
from florist_grpc.api.job_service import JobServicer
from florist_grpc.api.metrics_interceptor import MetricsInterceptor
from florist_grpc.api.prometheus import PlaneMetrics
from florist_grpc.api.reflection import enable_reflection
from florist_grpc.api.reloads import PlaneFiles
from florist_grpc.api.services import FLORIST_SERVICES, Servicers
from florist_grpc.api.training_service import TrainingServicer
from florist_grpc.config import Settings
from florist_grpc.export import Exports
from florist_grpc.jobs.admission import Limits
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.logs import JobLogs
from florist_grpc.jobs.queue import Admission, QueueDispatcher, agent_sites
from florist_grpc.jobs.recovery import recover, stop_embedded_redis
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.jobs.training import Trainer
from florist_grpc.jobs.watch_hub import WatchHub
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.backends import make_launcher
from florist_grpc.launch.plugins import load_catalog
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.launch.watcher import ProcessWatcher
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.ingest import ReportIngest
from florist_grpc.metrics.listener import ReportListener
from florist_grpc.metrics.publisher import EventPublisher
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.metrics.report_reader import ReportReader
from florist_grpc.metrics.stream import MetricsFeed
from florist_grpc.metrics.supervisor import RedisSupervisor
from florist_grpc.metrics.throttle import ReadThrottle
from florist_grpc.net import listen_problem, redis_address_of
from florist_grpc.startup import step
from florist_grpc.store.base import JobStore
from florist_grpc.store.data_dir_lock import DataDirLock
from florist_grpc.store.factory import open_store

log = logging.getLogger(__name__)


@dataclass
class Running:
    store: JobStore
    hub: EventHub
    follower: JobFollower
    agents: Agents
    redis: EmbeddedRedis | None
    users: RunUsers
    supervisor: RedisSupervisor | None
    trainer: Trainer


class ControlPlane:
    """The control plane with `start()` / `stop(grace)`; `port` is the bound port once started."""

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self._given_store = store  # injected (benchmarks, tests); else chosen from the settings
        self.port = 0
        self.redis_url = ""
        self._server: grpc.aio.Server | None = None
        self._running: Running | None = None
        self.metrics = PlaneMetrics()
        self._health = HealthWatch(FLORIST_SERVICES, self.metrics, settings.timeouts.health_check_seconds)
        self._pool: LauncherPool | None = None
        self._started: contextlib.AsyncExitStack | None = None  # what stop() undoes, in reverse order
        self._files: PlaneFiles | None = None  # its certificate and auth file, reloaded when they change

    async def start(self) -> None:
        """Start serving. A start that fails stops whatever it had started, in reverse order (server, metrics
        endpoint, launcher pool, store, embedded Redis, data-dir lock), and raises StartFailed naming the step."""
        async with contextlib.AsyncExitStack() as started:
            await self._start(started)
            self._started = started.pop_all()  # stop() unwinds it

    async def _start(self, started: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        data_dir = settings.data_dir.resolve()
        with step(f"creating the data dir {data_dir}"):
            data_dir.mkdir(parents=True, exist_ok=True)
        lock = DataDirLock(data_dir)
        lock.acquire()  # before anything in the data dir (store, Redis, jobs) is touched; names the holder
        started.callback(lock.release)  # last: once the store and Redis are closed, another serve may take it
        # Interceptor order, outermost first: metrics counts and times every call (denied ones too); audit logs
        # each mutating call with its outcome (denials too); auth runs last, right before the servicer.
        with step(f"reading --auth-file {settings.auth_file} and the TLS files"):
            self._files = files = PlaneFiles(settings)
        tokens = files.tokens
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [
            MetricsInterceptor(self.metrics),
            AuditInterceptor(tokens),
        ]
        if tokens.tokens is not None:
            interceptors.append(AuthInterceptor(tokens))
        server = build_server(interceptors)
        # Ports first: one in use fails the start before the store, Redis or the launcher pool are touched.
        with step(f"--port {settings.port}"):
            if problem := listen_problem(settings.host, settings.port):
                raise OSError(problem)  # said before gRPC tries, which would also log its own lines about it
            credentials = files.certificate.credentials() if files.certificate is not None else None
            self.port = add_port(server, f"{settings.host}:{settings.port}", credentials)
        started.push_async_callback(self._release_port, server)
        if settings.metrics_port:
            with step(f"--metrics-port {settings.metrics_port}"):
                self.metrics.serve(settings.host, settings.metrics_port)
            started.callback(self.metrics.close)
        dashboard = None
        if settings.http_port:
            with step(f"--http-port {settings.http_port}"):
                dashboard = DashboardServer.bind(settings, tokens)
            started.push_async_callback(dashboard.stop)
        if settings.launcher_pool:
            # Started first: it imports torch and Flower in the background while the rest starts up.
            self._pool = LauncherPool(data_dir / "launcher-pool.log", settings.timeouts)
            with step("starting the launcher pool"):
                self._pool.start()
            started.push_async_callback(asyncio.to_thread, self._pool.stop)  # FL processes it forked keep running
        store = self._given_store
        if store is None:
            with step("opening the job store"):
                store = await asyncio.to_thread(open_store, settings.mongodb_uri, data_dir)
        started.callback(store.close)
        embedded: EmbeddedRedis | None = None
        if settings.redis_url:
            self.redis_url = settings.redis_url
        else:
            # Under Slurm FL processes on other nodes report to it: it also listens on --advertise-host.
            also_bind = settings.advertise_host if settings.launcher.slurm else ""
            embedded = EmbeddedRedis(data_dir, settings.timeouts, settings.limits, also_bind)
            started.push_async_callback(stop_embedded_redis, embedded, store)
            with step(f"starting the embedded Redis in {embedded.dir}"):
                self.redis_url = await asyncio.to_thread(embedded.start)
        hub = EventHub(asyncio.get_running_loop())
        timeouts = settings.timeouts
        publisher = EventPublisher(hub, self.metrics)
        # Per-run Redis users only in a Redis we own; an external one is its operator's (its URL's credentials).
        admin_url = embedded.admin_url if embedded is not None else None
        users = RunUsers(self.redis_url, timeouts.report_key_ttl_seconds, admin_url)
        started.callback(users.close)
        # A report: listener -> reader (on the follower's thread: throttle, ingest -> store) -> publisher -> hub.
        reader = ReportReader(
            ReportIngest(self.redis_url, store, publisher.publish, settings.limits),
            # Read from the follower thread without the loop: an approximate count is all it needs.
            ReadThrottle(subscribers=hub.subscriber_count, min_interval=timeouts.report_read_interval_seconds),
        )
        listener = ReportListener(self.redis_url, reader.notify)
        follower = JobFollower(store, reader, listener, ProcessWatcher(), publisher, timeouts, users.retire)
        launcher = make_launcher(settings.launcher, self._pool, settings.fl_server_host)
        started.callback(launcher.close)
        agents = Agents(self.redis_url, timeouts, launcher.fl_servers_here)
        started.push_async_callback(agents.close)
        supervisor = RedisSupervisor(embedded) if embedded is not None else None
        # Builtin models plus installed plugins, described in a subprocess (plugins import torch; we do not).
        with step("describing the installed model plugins"):
            catalog = await asyncio.to_thread(load_catalog, timeouts.plugin_discovery_seconds)
        callers = Callers(tokens)
        limits = Limits(settings.max_running_jobs, settings.max_running_jobs_per_project)
        admission = Admission(store, limits, agent_sites(agents), callers.site_projects)
        registry = JobRegistry(
            store, redis_address_of(self.redis_url), settings.jobs_dir, settings.fl_server_host, catalog
        )
        # The address FL processes report at: the embedded Redis's --advertise-host address under Slurm.
        fl_redis_url = self.redis_url
        if embedded is not None and settings.launcher.slurm:
            fl_redis_url = f"redis://{settings.advertise_host}:{embedded.port}/0"
        trainer = Trainer(
            store,
            follower,
            publisher,
            agents,
            fl_redis_url,
            data_dir,
            timeouts,
            users,
            settings.tls,
            catalog,
            agents.probe_data,
            self._pool,
            settings.data_roots,
            callers.site_projects,
            admission,
            launcher,
            settings.jobs_dir,
        )
        # The queue wakes when capacity may have freed: a running job ended (the store's changes), an agent came.
        dispatcher = QueueDispatcher(admission, trainer.start_queued, trainer.end_queued)
        store.on_change(dispatcher.on_change)
        agents.on_connect.append(lambda name: dispatcher.wake())
        files.on_tokens_changed.append(dispatcher.wake)  # a site whose token left may no longer run a queued job
        self._running = Running(store, hub, follower, agents, embedded, users, supervisor, trainer)

        watch_hub = WatchHub(asyncio.get_running_loop())
        store.on_change(watch_hub.publish_threadsafe)
        logs = JobLogs(registry, agents, trainer.log_path)
        servicers = Servicers(
            jobs=JobServicer(registry, callers, store, watch_hub, timeouts.watch_bookmark_seconds),
            training=TrainingServicer(trainer, registry, MetricsFeed.over(store, hub), logs, callers),
            catalog=CatalogServicer(catalog),
            agents=AgentServicer(agents, tokens, timeouts.agent_hello_seconds),
        )
        servicers.add_to(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health.servicer, server)
        enable_reflection(server, (*FLORIST_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
        self.metrics.count_jobs(store.count_jobs_by_state)
        follower.start()
        started.push_async_callback(asyncio.to_thread, follower.stop)
        if exports := await asyncio.to_thread(Exports.started, settings, store, settings.jobs_dir, trainer.model_dir):
            hub.observe(exports.published)  # experiment trackers: registered after the follower, they stop first
            started.push_async_callback(asyncio.to_thread, exports.stop)
        with step("re-attaching the jobs in progress"):
            recovered = await asyncio.to_thread(recover, store, follower, agents, launcher.adopt)
        if recovered:
            log.info("re-attached %d IN_PROGRESS job(s)", recovered)
        dispatcher.start()  # the queue is in the store: what waited before a restart starts as it fits
        started.push_async_callback(dispatcher.stop)
        started.push_async_callback(trainer.close)  # StartTraining's launches that outlived their callers
        files.start()
        started.push_async_callback(files.stop)
        with step("starting the gRPC server"):
            await server.start()
        self._server = server
        if dashboard is not None:
            with step("starting the dashboard"):
                dashboard.start(servicers, files.tls_files)  # the browsers' API: these servicers, tokens, files
            started.push_async_callback(dashboard.stop)  # unwound first: browser calls end before what they use

        def store_ok() -> None:
            if supervisor is not None:
                supervisor.check()  # a dead embedded Redis is restarted
            store.ping()

        await self._health.start(store_ok, self.redis_url)

    def reload(self) -> None:
        """Read the TLS files and the auth file again now (SIGHUP), whether or not they look changed."""
        if self._files is not None:
            self._files.reload()

    @property
    def launcher_pool(self) -> LauncherPool | None:
        return self._pool

    @property
    def store(self) -> JobStore:
        assert self._running is not None, "not started"
        return self._running.store

    @property
    def hub(self) -> EventHub:
        assert self._running is not None, "not started"
        return self._running.hub

    @property
    def trainer(self) -> Trainer:
        assert self._running is not None, "not started"
        return self._running.trainer

    @property
    def embedded_redis(self) -> EmbeddedRedis | None:
        assert self._running is not None, "not started"
        return self._running.redis

    @property
    def follower(self) -> JobFollower:
        assert self._running is not None, "not started"
        return self._running.follower

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def _release_port(self, server: grpc.aio.Server) -> None:
        # grpc.aio frees a bound port only when a started server stops: one that never started (the start failed
        # after binding) is started, with whatever is registered by then, and stopped at once.
        if self._server is None:
            await server.start()
        await server.stop(0)

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving: NOT_SERVING first, in-flight unary calls get `grace` seconds, streams are cancelled; then
        everything start() started stops, in reverse order."""
        grace = self.settings.timeouts.shutdown_grace_seconds if grace is None else grace
        await self._health.shutdown()
        if self._running is not None:
            self._running.agents.close_sessions()
        if self._server is not None:
            await self._server.stop(grace)
        self._health.close()
        self.metrics.close()
        self._running = None
        started, self._started = self._started, None
        if started is not None:
            await started.aclose()
