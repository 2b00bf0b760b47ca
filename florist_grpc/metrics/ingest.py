"""One step of the pipeline: sources' reports in Redis -> merge patches -> persisted events -> hub.

Work is done in batches: one round trip to Redis for every source notified since the last batch (metrics/
report_fetch.py), one store transaction for every change found, one hand-over of the new events to the event
loop. A burst of reports therefore costs a few round trips, not a few per report.

A report is read from its text by metrics/report_text.py, which parses and diffs only what changed since the
source's last persisted report (kept with its text), and makes it portable there, where it enters the pipeline
(NaN/Infinity as strings: see domain/portable_json.py). A report that is not usable (over the size bound, which
it is never read whole to find out; not JSON; nested too deep for protobuf clients) and a change the store cannot hold
are logged and set aside: the source keeps its last persisted report as baseline, the rest of the batch and every
later report go on, and nothing is retried forever. The reader posts a notice in the job's events (`notice`). A
job whose stored history reached its bound has its changes refused (metrics/report_bounds.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from florist_grpc import redis_clients
from florist_grpc.domain.model import JOB_SOURCE, JsonObject, MetricsEvent, Source
from florist_grpc.limits import Limits
from florist_grpc.metrics import report_text
from florist_grpc.metrics.report_bounds import HistoryFull, JobHistory, set_aside_notice
from florist_grpc.metrics.report_fetch import ReportFetch
from florist_grpc.metrics.report_text import Kept, Read, Unusable
from florist_grpc.store.base import JobStore, ReportChange, SetAside

log = logging.getLogger(__name__)


class ReportIngest:
    """Reads reports and appends what changed since the last persisted ones. Used by one thread only."""

    def __init__(
        self,
        redis_url: str,
        store: JobStore,
        publish: Callable[[list[MetricsEvent]], None],
        limits: Limits | None = None,
    ) -> None:
        limits = limits or Limits()
        self._redis = redis_clients.client(redis_url, 5.0)
        self._store = store
        self._publish = publish
        self._fetch = ReportFetch(self._redis, limits.report_max_bytes)
        self._history = JobHistory(limits.job_history_max_bytes, self._stored_bytes)
        self._kept: dict[str, Kept] = {}  # by run uuid: the reading of the source's persisted report

    def read_raw(self, uuids: Sequence[str]) -> list[bytes | SetAside | None]:
        """The text of the report under each uuid: None if absent (or not a string), SetAside if it is over the
        size bound (such a report is not read whole). Raises redis.RedisError."""
        return self._fetch.read(uuids)

    def sync(
        self, sources: Sequence[tuple[str, Source, str, JsonObject]]
    ) -> list[JsonObject | SetAside | HistoryFull | None]:
        """Read each (job id, source, run uuid, persisted report) source's report and persist what changed.

        For each source: its new persisted baseline (the report read: appended, unchanged, or its job no longer
        running); None (nothing reported); SetAside (the report or its change was set aside: the baseline stays);
        HistoryFull (its job's history is full: the change was refused). Raises redis.RedisError / Unavailable:
        retry them all.
        """
        raws = self.read_raw([uuid for _, _, uuid, _ in sources])
        now = datetime.now(UTC)
        out: list[JsonObject | SetAside | HistoryFull | None] = [r if isinstance(r, SetAside) else None for r in raws]
        found: list[tuple[int, Read]] = []
        for i, raw in enumerate(raws):
            if not isinstance(raw, bytes):
                continue
            _, _, uuid, persisted = sources[i]
            read = report_text.read(raw, persisted, self._kept.get(uuid))
            if isinstance(read, Unusable):
                log.warning("report %s set aside: %s", uuid, read.reason)
                out[i] = SetAside(read.reason)
            elif read.report:
                found.append((i, read))
        changes = [ReportChange(*sources[i][:2], sources[i][3], r.report, now, r.patch) for i, r in found]
        for (i, read), result in zip(found, self._persist(changes), strict=True):
            out[i] = read.report if result is None else result
            if result is None:  # the report read is the baseline now: keep its reading for the next one
                self._keep(sources[i][2], read.kept)
        return out

    def _keep(self, uuid: str, kept: Kept | None) -> None:
        if kept is None:
            self._kept.pop(uuid, None)
        else:
            self._kept[uuid] = kept

    def persist_many(self, changes: Sequence[ReportChange]) -> list[bool]:
        """Append every change and publish the events. For each change: True when its report is now the
        source's persisted baseline (appended, no change, or the job no longer running), False when it was set
        aside or refused (logged; the caller keeps the previous baseline). Raises Unavailable: retry the batch."""
        return [r is None for r in self._persist(changes)]

    def _persist(self, changes: Sequence[ReportChange]) -> list[SetAside | HistoryFull | None]:
        """Each change's outcome: None (now the baseline), SetAside, or HistoryFull."""
        out: list[SetAside | HistoryFull | None] = [None] * len(changes)
        admitted = []
        for i, change in enumerate(changes):
            refusal = self._history.refusal(change.job_id)
            if refusal is None:
                admitted.append(i)
            else:
                out[i] = refusal
        if not admitted:
            return out
        results = self._store.append_report_changes([changes[i] for i in admitted])
        appended = [r for r in results if isinstance(r, MetricsEvent)]
        for event in appended:
            self._history.add(event.job_id, _patch_bytes(event))
        if appended:
            self._publish(appended)
        for i, result in zip(admitted, results, strict=True):
            if isinstance(result, SetAside):
                change = changes[i]
                log.warning(
                    "job %s: a report change of %s could not be stored and was set aside: %s",
                    change.job_id,
                    change.source.key,
                    result.reason,
                )
                out[i] = result
        return out

    def notice(self, notices: Sequence[tuple[str, Source, str]]) -> None:
        """Tell each job, in its events, that a report of `source` was set aside and why: a change of the job's
        own report (`{"notice": ...}`, SOURCE_KIND_JOB), which every StreamMetrics reader sees."""
        now = datetime.now(UTC)
        self._persist(
            [
                ReportChange(job_id, JOB_SOURCE, {}, {"notice": set_aside_notice(source, reason)}, now)
                for job_id, source, reason in notices
            ]
        )

    def forget_sources(self, uuids: Iterable[str]) -> None:
        """These sources are no longer read: drop what was kept of their last reports."""
        uuids = list(uuids)
        for uuid in uuids:
            self._kept.pop(uuid, None)
        self._fetch.forget(uuids)

    def forget_job(self, job_id: str) -> None:
        """The job is no longer followed: drop its history count (read again from the store if it comes back)."""
        self._history.forget(job_id)

    def _stored_bytes(self, job_id: str) -> int:
        """The bytes of the job's stored events, summed page by page (once per job per follow)."""
        total, after = 0, 0
        while events := self._store.read_events(job_id, after, limit=1000):
            total += sum(_patch_bytes(e) for e in events)
            after = events[-1].sequence
        return total

    def close(self) -> None:
        self._redis.close()


def _patch_bytes(event: MetricsEvent) -> int:
    """What an event's patch takes in the store (both backends keep it as this JSON text)."""
    return len(json.dumps(event.patch))
