"""grpc.health.v1 for the control plane: SERVING while the store and Redis answer, probed every
`health_check_seconds` (a dead embedded Redis is restarted first); NOT_SERVING from the start of a shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import redis
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from florist_grpc import redis_clients
from florist_grpc.api.prometheus import PlaneMetrics


class HealthWatch:
    def __init__(self, services: Sequence[str], metrics: PlaneMetrics, interval: float) -> None:
        self.servicer = HealthServicer()
        self._services = ("", *services)
        self._metrics = metrics
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._redis_probe: redis.Redis | None = None

    async def start(self, store_ok: Callable[[], None], redis_url: str) -> None:
        """Probe now, then every interval. `store_ok` raises when the store (or what keeps it) is unusable."""
        await self._check(store_ok, redis_url)
        self._task = asyncio.create_task(self._watch(store_ok, redis_url))

    async def _check(self, store_ok: Callable[[], None], redis_url: str) -> None:
        try:
            await asyncio.to_thread(store_ok)
            store_healthy = True
        except Exception:
            store_healthy = False
        # Ask Redis itself: the listener only notices a lost connection while it has channels to read.
        redis_healthy = await asyncio.to_thread(self._ping_redis, redis_url)
        self._metrics.dependency("store", store_healthy)
        self._metrics.dependency("redis", redis_healthy)
        healthy = store_healthy and redis_healthy
        status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self._services:
            await self.servicer.set(service, status)

    def _ping_redis(self, redis_url: str) -> bool:
        if self._redis_probe is None:
            # One client for every probe; redis-py reconnects it after a failure.
            self._redis_probe = redis_clients.client(redis_url, 1.0)
        try:
            return bool(self._redis_probe.ping())
        except redis.RedisError:
            return False

    async def _watch(self, store_ok: Callable[[], None], redis_url: str) -> None:
        while True:
            await asyncio.sleep(self._interval)  # periodic probe of the store and Redis
            await self._check(store_ok, redis_url)

    async def shutdown(self) -> None:
        """NOT_SERVING from now on; probing stops."""
        if self._task is not None:
            self._task.cancel()
        await self.servicer.enter_graceful_shutdown()

    def close(self) -> None:
        if self._redis_probe is not None:
            self._redis_probe.close()
