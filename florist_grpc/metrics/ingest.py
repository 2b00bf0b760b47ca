"""One step of the pipeline: sources' reports in Redis -> merge patches -> persisted events -> hub.

Work is done in batches: one MGET for every source notified since the last batch, one store transaction for
every change found, one hand-over of the new events to the event loop. A burst of reports therefore costs a
few round trips, not a few per report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

import redis

from florist_grpc.domain.model import JsonObject, MetricsEvent
from florist_grpc.store.base import JobStore, ReportChange

log = logging.getLogger(__name__)

MGET_CHUNK = 1000


class ReportIngest:
    """Reads reports and appends what changed since the last persisted ones. Used by one thread only."""

    def __init__(self, redis_url: str, store: JobStore, publish: Callable[[list[MetricsEvent]], None]) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._store = store
        self._publish = publish

    def read_many(self, uuids: Sequence[str]) -> list[JsonObject | None]:
        """The report under each uuid (None if absent or not a JSON object). Raises redis.RedisError."""
        raws: list[bytes | str | None] = []
        for start in range(0, len(uuids), MGET_CHUNK):
            raws.extend(self._redis.mget(uuids[start : start + MGET_CHUNK]))
        return [self._parse(uuid, raw) for uuid, raw in zip(uuids, raws, strict=True)]

    @staticmethod
    def _parse(uuid: str, raw: bytes | str | None) -> JsonObject | None:
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

    def persist_many(self, changes: Sequence[ReportChange]) -> list[MetricsEvent | None]:
        """Append every change (None where there was none or the job is not running) and publish the events."""
        if not changes:
            return []
        events = self._store.append_report_changes(changes)
        appended = [e for e in events if e is not None]
        if appended:
            self._publish(appended)
        return events

    def close(self) -> None:
        self._redis.close()
