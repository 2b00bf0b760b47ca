"""Builds and runs the control plane: the grpc.aio server with its services, health, reflection, interceptors,
TLS, and the background machinery (store, Redis, follower) with an orderly shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from florist_grpc.api.auth import AuthInterceptor, load_auth_file
from florist_grpc.api.catalog_service import CatalogServicer
from florist_grpc.api.grpc_server import build_server, server_credentials
from florist_grpc.api.job_service import JobServicer
from florist_grpc.api.training_service import TrainingServicer
from florist_grpc.config import Settings
from florist_grpc.domain.model import JobState
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.recovery import recover
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.jobs.training import Trainer
from florist_grpc.launch.agent_client import AgentClients
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.throttle import ReadThrottle
from florist_grpc.net import redis_address_of
from florist_grpc.proto.florist.v1 import catalog_service_pb2, job_service_pb2, training_service_pb2
from florist_grpc.proto.florist.v1 import catalog_service_pb2_grpc as catalog_grpc
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as job_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.store.base import JobStore
from florist_grpc.store.factory import open_store

log = logging.getLogger(__name__)

FLORIST_SERVICES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    training_service_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name,
    catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
)
HEALTH_CHECK_SECONDS = 2.0


@dataclass
class Running:
    store: JobStore
    hub: EventHub
    follower: JobFollower
    agents: AgentClients
    redis: EmbeddedRedis | None


class ControlPlane:
    """The control plane with `start()` / `stop(grace)`; `port` is the bound port once started."""

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self._given_store = store  # injected (benchmarks, tests); else chosen from the settings
        self.port = 0
        self.redis_url = ""
        self._server: grpc.aio.Server | None = None
        self._running: Running | None = None
        self._health = HealthServicer()
        self._health_task: asyncio.Task[None] | None = None
        self._redis_probe: redis.Redis | None = None
        self._pool: LauncherPool | None = None

    async def start(self) -> None:
        settings = self.settings
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        # Interceptor order: auth is the only one and runs first, before any servicer code sees the call.
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
        if settings.auth_file is not None:
            interceptors.append(AuthInterceptor(load_auth_file(settings.auth_file)))
        credentials = server_credentials(settings)

        if settings.launcher_pool:
            # Started first: it imports torch and Flower in the background while the rest starts up.
            self._pool = LauncherPool(data_dir / "launcher-pool.log", settings.timeouts)
            self._pool.start()
        store = self._given_store
        if store is None:
            store = await asyncio.to_thread(open_store, settings.mongodb_uri, data_dir)
        embedded: EmbeddedRedis | None = None
        if settings.redis_url:
            self.redis_url = settings.redis_url
        else:
            embedded = EmbeddedRedis(data_dir, settings.timeouts)
            self.redis_url = await asyncio.to_thread(embedded.start)
        loop = asyncio.get_running_loop()
        hub = EventHub(loop)
        timeouts = settings.timeouts
        follower = JobFollower(
            store,
            self.redis_url,
            hub.publish_threadsafe,
            timeouts,
            # Read from the follower thread without the loop: an approximate count is all it needs.
            ReadThrottle(subscribers=hub.subscriber_count),
        )
        agents = AgentClients(settings.agent_token, timeouts.agent_call_seconds)
        self._running = Running(store, hub, follower, agents, embedded)
        registry = JobRegistry(store, redis_address_of(self.redis_url), data_dir / "jobs", settings.host)
        trainer = Trainer(store, follower, hub, agents, self.redis_url, data_dir, timeouts, self._pool)

        server = build_server(interceptors)
        job_grpc.add_JobServiceServicer_to_server(JobServicer(registry), server)
        training_grpc.add_TrainingServiceServicer_to_server(
            TrainingServicer(trainer, registry, store, hub, agents), server
        )
        catalog_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*FLORIST_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        address = f"{settings.host}:{settings.port}"
        if credentials is not None:
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        follower.start()
        recovered = await asyncio.to_thread(recover, store, follower, agents)
        if recovered:
            log.info("re-attached %d IN_PROGRESS job(s)", recovered)
        await server.start()
        self._server = server
        await self._check_health()
        self._health_task = asyncio.create_task(self._watch_health())

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
    def follower(self) -> JobFollower:
        assert self._running is not None, "not started"
        return self._running.follower

    async def _check_health(self) -> None:
        assert self._running is not None
        try:
            await asyncio.to_thread(self._running.store.ping)
            # Ask Redis itself: the listener only notices a lost connection while it has channels to read.
            healthy = await asyncio.to_thread(self._ping_redis)
        except Exception:
            healthy = False
        status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *FLORIST_SERVICES):
            await self._health.set(service, status)

    def _ping_redis(self) -> bool:
        if self._redis_probe is None:
            # One client for every probe; redis-py reconnects it after a failure.
            self._redis_probe = redis.Redis.from_url(self.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(self._redis_probe.ping())
        except redis.RedisError:
            return False

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_CHECK_SECONDS)  # periodic probe of the store and Redis
            await self._check_health()

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving: NOT_SERVING first, in-flight unary calls get `grace` seconds, streams are cancelled."""
        grace = self.settings.timeouts.shutdown_grace_seconds if grace is None else grace
        if self._health_task is not None:
            self._health_task.cancel()
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self._redis_probe is not None:
            self._redis_probe.close()
        if self._pool is not None:
            await asyncio.to_thread(self._pool.stop)  # FL processes it forked keep running
        running, self._running = self._running, None
        if running is None:
            return
        await asyncio.to_thread(running.follower.stop)
        running.agents.close()
        if running.redis is not None:
            in_progress = await asyncio.to_thread(running.store.jobs_in_state, JobState.IN_PROGRESS)
            if in_progress:
                # FL processes keep reporting into it; a restarted control plane adopts it and resumes.
                log.info("leaving the embedded Redis running for %d IN_PROGRESS job(s)", len(in_progress))
            else:
                await asyncio.to_thread(running.redis.stop)
        running.store.close()
