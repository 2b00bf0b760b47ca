"""One step of the pipeline: a source's report in Redis -> merge patch -> persisted event -> hub."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from florist_grpc.jobs.model import JsonObject, MetricsEvent, Source
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)


class ReportIngest:
    """Reads reports and appends the change since the last persisted report. Used by one thread only."""

    def __init__(self, redis_url: str, store: JobStore, publish: Callable[[MetricsEvent], None]) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._store = store
        self._publish = publish

    def read(self, uuid: str) -> JsonObject | None:
        """The report stored under `uuid`, or None if absent or not a JSON object. Raises redis.RedisError."""
        raw = self._redis.get(uuid)
        if raw is None:
            return None
        try:
            report = json.loads(raw)
        except ValueError:
            log.warning("report %s is not JSON; ignored", uuid)
            return None
        if not isinstance(report, dict):
            log.warning("report %s is not a JSON object; ignored", uuid)
            return None
        return report

    def persist(self, job_id: str, source: Source, last: JsonObject, report: JsonObject) -> MetricsEvent | None:
        """Append the change from `last` to `report` (None when there is none or the job is not running)."""
        event = self._store.append_report_change(job_id, source, last, report, datetime.now(UTC))
        if event is not None:
            self._publish(event)
        return event

    def close(self) -> None:
        self._redis.close()
