"""Brings the embedded Redis back when it dies.

Restarted on its port (FL processes and our own clients know that address) from its append-only file and ACL
file (every report and every run's user survive). Nothing else needs telling: the listener reconnects and
re-subscribes, and each subscription confirmation makes the follower read that source's key again, so reports
written just before the crash or retried by the FL processes during the outage are all persisted. Until it is
back, health is NOT_SERVING and StartTraining answers UNAVAILABLE (metrics/redis_users.py `check`).
"""

from __future__ import annotations

import logging

from florist_grpc.metrics.embedded_redis import EmbeddedRedis

log = logging.getLogger(__name__)


class RedisSupervisor:
    def __init__(self, embedded: EmbeddedRedis) -> None:
        self._embedded = embedded
        self.restarts = 0

    def check(self) -> None:
        """Restart the embedded Redis if its process is gone (called by the periodic health check)."""
        if self._embedded.running():
            return
        log.warning("the embedded Redis (port %d) is gone; restarting it", self._embedded.port)
        try:
            self._embedded.start(same_port=True)
        except (OSError, RuntimeError) as exc:
            log.error("restarting the embedded Redis failed (%s); trying again at the next health check", exc)
            return
        self.restarts += 1
