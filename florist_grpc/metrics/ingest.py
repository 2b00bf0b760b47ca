"""One step of the pipeline: sources' reports in Redis -> merge patches -> persisted events -> hub.

Work is done in batches: one MGET for every source notified since the last batch, one store transaction for
every change found, one hand-over of the new events to the event loop. A burst of reports therefore costs a
few round trips, not a few per report.

A report is made portable once, here, where it enters the pipeline (NaN/Infinity as strings: see
domain/portable_json.py). A report that is not usable (not JSON, nested too deep for protobuf clients) and a
change the store cannot hold are logged and set aside: the source keeps its last persisted report as baseline,
the rest of the batch and every later report go on, and nothing is retried forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import redis

from florist_grpc.domain import portable_json
from florist_grpc.domain.model import JsonObject, MetricsEvent, Source
from florist_grpc.store.base import JobStore, ReportChange, SetAside

log = logging.getLogger(__name__)

MGET_CHUNK = 1000
# Deepest report accepted: a JSON level is three protobuf message levels (Struct, map entry, Value), and protobuf
# decoders refuse more than 100 by default, so a report over ~32 levels could be stored but never decoded by
# the clients of StreamMetrics or GetJob. FL4Health's are 4 deep.
MAX_REPORT_DEPTH = 24


def _too_deep(value: dict[str, object] | list[object], levels: int) -> bool:
    """Whether a JSON object or array nests more than `levels` levels (itself counting as one)."""
    if levels <= 0:
        return True
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list) and _too_deep(item, levels - 1):
            return True
    return False


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
            report = portable_json.loads(raw)
        except (ValueError, RecursionError):
            log.warning("report %s is not JSON; ignored", uuid)
            return None
        if not isinstance(report, dict):
            log.warning("report %s is not a JSON object; ignored", uuid)
            return None
        if _too_deep(report, MAX_REPORT_DEPTH):
            log.warning("report %s is nested deeper than %d levels; ignored", uuid, MAX_REPORT_DEPTH)
            return None
        return report

    def sync(self, sources: Sequence[tuple[str, Source, str, JsonObject]]) -> list[JsonObject | None]:
        """Read each (job id, source, run uuid, persisted report) source's report and persist what changed.

        For each source: its new persisted baseline (the report read: appended, unchanged, or its job no longer
        running), or None (nothing reported, or the change was set aside). Raises redis.RedisError / Unavailable:
        retry them all.
        """
        reports = self.read_many([uuid for _, _, uuid, _ in sources])
        now = datetime.now(UTC)
        found = [(i, report) for i, report in enumerate(reports) if report]
        changes = [ReportChange(sources[i][0], sources[i][1], sources[i][3], report, now) for i, report in found]
        out: list[JsonObject | None] = [None] * len(sources)
        for (i, report), baseline in zip(found, self.persist_many(changes), strict=True):
            if baseline:
                out[i] = report
        return out

    def persist_many(self, changes: Sequence[ReportChange]) -> list[bool]:
        """Append every change and publish the events. For each change: True when its report is now the
        source's persisted baseline (appended, no change, or the job no longer running), False when the store
        set it aside (logged; the caller keeps the previous baseline). Raises Unavailable: retry the batch."""
        if not changes:
            return []
        results = self._store.append_report_changes(changes)
        appended = [r for r in results if isinstance(r, MetricsEvent)]
        if appended:
            self._publish(appended)
        for change, result in zip(changes, results, strict=True):
            if isinstance(result, SetAside):
                log.warning(
                    "job %s: a report change of %s could not be stored and was set aside: %s",
                    change.job_id,
                    change.source.key,
                    result.reason,
                )
        return [not isinstance(r, SetAside) for r in results]

    def close(self) -> None:
        self._redis.close()
