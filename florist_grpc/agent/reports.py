"""The site's clients' reports: its own loopback Redis (FLorist's protocol, unchanged inside the site), listened to
with the control plane's own ReportListener, and relayed to the control plane as whole snapshots.

Snapshots make the relay simple and lossless: whatever was missed while disconnected is contained in the next
snapshot, so after every reconnect the latest report of every client is sent again.

The site's Redis is supervised as the control plane's is (metrics/supervisor.py): `health()`, called
periodically, restarts it on its port when its process is gone and says what is wrong while it does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

import redis

from florist_grpc import redis_clients
from florist_grpc.config import Timeouts
from florist_grpc.limits import Limits
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.listener import ReportListener
from florist_grpc.metrics.redis_users import RedisCredentials, RunUsers
from florist_grpc.metrics.supervisor import RedisSupervisor
from florist_grpc.net import redis_address_of

log = logging.getLogger(__name__)


class SiteReports:
    def __init__(self, state_dir: Path, timeouts: Timeouts, limits: Limits | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        limits = limits or Limits()
        # The site's Redis has the control plane's bounds (maxmemory, noeviction, one value's size).
        self._redis = EmbeddedRedis(state_dir, timeouts, limits)
        self._max_report = limits.relayed_report_max_bytes
        self._supervisor = RedisSupervisor(self._redis)
        self._probe: redis.Redis | None = None
        self._changed: set[str] = set()
        self._wake = asyncio.Event()
        self._listener: ReportListener | None = None
        self._client: redis.Redis | None = None
        self._users: RunUsers | None = None
        self._key_ttl = timeouts.report_key_ttl_seconds
        self.address = ""

    def start(self, uuids: Iterable[str]) -> None:
        """Start (or adopt) the site's Redis and listen to `uuids`. Blocking: run it in a thread."""
        url = self._redis.start()
        self.address = redis_address_of(url)
        self._client = redis_clients.client(url, 5.0)
        # Its own client with short timeouts: a health probe of a hung Redis must not take as long as a read.
        self._probe = redis_clients.client(url, 1.0)
        # The site's clients report as users that may only write their own run's key, as on the control plane.
        self._users = RunUsers(url, self._key_ttl, self._redis.admin_url)
        self._listener = ReportListener(url, self._notify)
        self._listener.start()
        self.follow(uuids)

    @property
    def redis_dir(self) -> str:
        return str(self._redis.dir)

    def health(self) -> str:
        """'' while the site's Redis answers, else what is wrong; restarts it first if its process is gone.
        Blocking: run it in a thread."""
        self._supervisor.check()
        assert self._probe is not None, "not started"
        try:
            self._probe.ping()
        except redis.RedisError as exc:
            return f"its Redis (port {self._redis.port}) does not answer: {exc}"
        return ""

    def credentials(self, uuid: str) -> RedisCredentials:
        """A new Redis user for the client of run `uuid` (blocking)."""
        assert self._users is not None
        return self._users.create([uuid])[uuid]

    def follow(self, uuids: Iterable[str]) -> None:
        assert self._listener is not None
        self._listener.follow(uuids)

    def _notify(self, uuid: str) -> None:  # the listener's thread
        self._loop.call_soon_threadsafe(self.mark_changed, [uuid])

    def mark_changed(self, uuids: Iterable[str]) -> None:
        self._changed.update(uuids)
        self._wake.set()

    async def changed(self) -> list[str]:
        """Wait until some client's report changed; the uuids that did."""
        await self._wake.wait()
        self._wake.clear()
        uuids, self._changed = sorted(self._changed), set()
        return uuids

    async def read(self, uuid: str) -> str:
        """The client's current report ('' if it has reported nothing, or one too large to relay: never read)."""
        assert self._client is not None
        size = await asyncio.to_thread(self._client.strlen, uuid)
        if size > self._max_report:
            log.warning(
                "client %s: its report is %d bytes, over the %d bytes an agent relays "
                "(Limits.relayed_report_max_bytes); not relayed",
                uuid,
                size,
                self._max_report,
            )
            return ""
        body = await asyncio.to_thread(self._client.get, uuid)
        return body.decode() if isinstance(body, bytes) else ""

    def stop(self, keep_redis: bool = False) -> None:
        """Stop listening; stop the site's Redis too unless `keep_redis` (clients still running report to it)."""
        if self._listener is not None:
            self._listener.stop()
        for client in (self._client, self._probe):
            if client is not None:
                client.close()
        if self._users is not None:
            self._users.close()
        if not keep_redis:
            self._redis.stop()
