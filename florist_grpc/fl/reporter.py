"""FLorist's Redis reporting protocol, spoken by the FL processes (FL4Health's reporter keys).

The whole report is one JSON object: SET key=<run uuid> to it, then PUBLISH channel=<run uuid>. Per-round data
goes under rounds.<n>. Because every SET carries the whole report, a write lost to a Redis hiccup is repaired
by the next one.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import redis

from florist_grpc.domain.portable_json import portable

log = logging.getLogger(__name__)


def now() -> str:
    return str(datetime.now())


def encode(report: dict[str, Any]) -> str:
    """The report as strict JSON: a diverging run's NaN/Infinity as the strings "NaN"/"Infinity" (DESIGN.md)."""
    return json.dumps(portable(report), allow_nan=False)


class RedisReporter:
    def __init__(self, redis_address: str, run_uuid: str, attempts: int = 20) -> None:
        host, _, port = redis_address.rpartition(":")
        self._redis = redis.Redis(host=host.strip("[]"), port=int(port), socket_timeout=5.0, socket_connect_timeout=5.0)
        self.uuid = run_uuid
        self.report: dict[str, Any] = {}
        self._attempts = attempts

    def _publish(self) -> None:
        body = encode(self.report)
        delay = 0.05
        for attempt in range(self._attempts):
            try:
                pipe = self._redis.pipeline(transaction=True)
                pipe.set(self.uuid, body)
                pipe.publish(self.uuid, self.uuid)
                pipe.execute()
                return
            except redis.RedisError as exc:
                if attempt == self._attempts - 1:
                    log.error("could not report to Redis after %d attempts: %s", self._attempts, exc)
                    return
                time.sleep(delay)  # back off before retrying a failed network write
                delay = min(delay * 2, 2.0)

    def report_values(self, **values: Any) -> None:
        self.report.update(values)
        self._publish()

    def report_round(self, round_number: int, **values: Any) -> None:
        rounds = self.report.setdefault("rounds", {})
        rounds.setdefault(str(round_number), {}).update(values)
        self._publish()
