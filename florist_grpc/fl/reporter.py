"""FLorist's Redis reporting protocol, spoken by the FL processes (FL4Health's reporter keys).

The whole report is one JSON object: SET key=<run uuid> to it, then PUBLISH channel=<run uuid>. Per-round data
goes under rounds.<n>. Because every SET carries the whole report, a write lost to a Redis hiccup is repaired
by the next one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from florist_grpc.config import Timeouts
from florist_grpc.domain.portable_json import portable

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
# Redis is on loopback or a LAN: a connect or a reply that takes a second is a Redis that is not there.
SOCKET_TIMEOUT_SECONDS = 1.0


def report_retry(budget_seconds: float) -> Retry:
    """redis-py's own retry with exponential backoff: as many retries as fit in `budget_seconds`.

    Each attempt is counted at its worst (a socket timeout) plus the backoff before it, so a report gives up
    within the budget. The budget stays below the control plane's readiness timeout: an FL server that cannot
    report exits with the cause in its log before StartTraining would time out saying only "not ready".
    """
    backoff = ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS)
    retries, worst = 0, SOCKET_TIMEOUT_SECONDS
    while worst + backoff.compute(retries + 1) + SOCKET_TIMEOUT_SECONDS <= budget_seconds:
        retries += 1  # redis-py waits backoff.compute(n) before retry n
        worst += backoff.compute(retries) + SOCKET_TIMEOUT_SECONDS
    return Retry(backoff, retries)


def now() -> str:
    return str(datetime.now())


def encode(report: dict[str, Any]) -> str:
    """The report as strict JSON: a diverging run's NaN/Infinity as the strings "NaN"/"Infinity" (DESIGN.md)."""
    return json.dumps(portable(report), allow_nan=False)


class ReportFailed(RuntimeError):
    """Redis stayed unreachable for the whole retry budget: the process ends, saying so."""


class RedisReporter:
    def __init__(
        self,
        redis_address: str,
        run_uuid: str,
        username: str = "",
        password: str = "",
        retry_seconds: float = Timeouts.report_retry_seconds,
    ) -> None:
        host, _, port = redis_address.rpartition(":")
        self._redis = redis.Redis(
            host=host.strip("[]"),
            port=int(port),
            username=username or None,
            password=password or None,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=report_retry(retry_seconds),
        )
        self.uuid = run_uuid
        self.report: dict[str, Any] = {}

    def _publish(self) -> None:
        body = encode(self.report)
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self.uuid, body)
            pipe.publish(self.uuid, self.uuid)
            pipe.execute()
        except redis.RedisError as exc:
            # The size says why when Redis refused the report itself (its memory or value bound: config.Limits).
            raise ReportFailed(f"could not report {len(body)} bytes to Redis at {self._address()}: {exc}") from exc

    def _address(self) -> str:
        kwargs = self._redis.connection_pool.connection_kwargs
        return f"{kwargs.get('host')}:{kwargs.get('port')}"

    def report_values(self, **values: Any) -> None:
        self.report.update(values)
        self._publish()

    def report_round(self, round_number: int, **values: Any) -> None:
        rounds = self.report.setdefault("rounds", {})
        rounds.setdefault(str(round_number), {}).update(values)
        self._publish()
