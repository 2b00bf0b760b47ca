"""One step of the pipeline: sources' reports in Redis -> merge patches -> persisted events -> hub.

Work is done in batches: one MGET for every source notified since the last batch, one store transaction for
every change found, one hand-over of the new events to the event loop. A burst of reports therefore costs a
few round trips, not a few per report.

A report is read from its text by metrics/report_text.py, which parses and diffs only what changed since the
source's last persisted report (kept with its text), and makes it portable there, where it enters the pipeline
(NaN/Infinity as strings: see domain/portable_json.py). A report that is not usable (over the size bound, which
is checked before it is read; not JSON; nested too deep for protobuf clients) and a change the store cannot hold
are logged and set aside: the source keeps its last persisted report as baseline, the rest of the batch and every
later report go on, and nothing is retried forever. The reader posts a notice in the job's events (`notice`). A
job whose stored history reached its bound has its changes refused (metrics/report_bounds.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from florist_grpc.domain.model import JOB_SOURCE, JsonObject, MetricsEvent, Source
from florist_grpc.limits import Limits
from florist_grpc.metrics import report_text
from florist_grpc.metrics.report_bounds import HistoryFull, JobHistory, oversized, set_aside_notice
from florist_grpc.metrics.report_text import Kept, Read, Unusable
from florist_grpc.store.base import JobStore, ReportChange, SetAside

log = logging.getLogger(__name__)

MGET_CHUNK = 1000
# One MGET reads at most this many bytes of reports (their sizes are known first): a batch of large reports is
# read in several round trips instead of one reply of a GiB.
MGET_CHUNK_BYTES = 64 * 1024 * 1024


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
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._store = store
        self._publish = publish
        self._max_report = limits.report_max_bytes
        self._history = JobHistory(limits.job_history_max_bytes, self._stored_bytes)
        self._kept: dict[str, Kept] = {}  # by run uuid: the reading of the source's persisted report

    def read_raw(self, uuids: Sequence[str]) -> list[bytes | SetAside | None]:
        """The text of the report under each uuid: None if absent (or not a string), SetAside if it is over the
        size bound (such a report is not read at all). Raises redis.RedisError."""
        out: list[bytes | SetAside | None] = [None] * len(uuids)
        sizes = self._sizes(uuids)
        wanted = []
        for i, size in enumerate(sizes):
            if (reason := oversized(size, self._max_report)) is not None:
                log.warning("report %s set aside unread: %s", uuids[i], reason)
                out[i] = SetAside(reason)
            elif size:
                wanted.append(i)
        for chunk in _chunks(wanted, sizes):
            (raws,) = self._round_trip([("MGET", *(uuids[i] for i in chunk))])
            if isinstance(raws, Exception):
                raise raws  # Redis refused or failed: the whole read is retried
            for i, raw in zip(chunk, raws, strict=True):
                if raw is not None and (reason := oversized(len(raw), self._max_report)) is not None:
                    log.warning("report %s set aside: %s", uuids[i], reason)  # it grew between STRLEN and MGET
                    out[i] = SetAside(reason)
                else:
                    out[i] = raw.encode() if isinstance(raw, str) else raw
        return out

    def _sizes(self, uuids: Sequence[str]) -> list[int]:
        """STRLEN of each key in one round trip per chunk: 0 if absent, or not a string (as MGET would say)."""
        sizes: list[int] = []
        for start in range(0, len(uuids), MGET_CHUNK):
            for reply in self._round_trip([("STRLEN", uuid) for uuid in uuids[start : start + MGET_CHUNK]]):
                if isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE"):
                    sizes.append(0)  # not a string: MGET says None, so no report
                elif isinstance(reply, Exception):
                    raise reply  # Redis refused or failed: the whole read is retried
                else:
                    sizes.append(int(reply))
        return sizes

    def _round_trip(self, commands: list[tuple[str, ...]]) -> list[Any]:
        """Send `commands` in one write and read their replies, an error reply as its exception in its place: a
        redis-py pipeline without its per-command bookkeeping, which cost the follower more CPU than the round
        trip itself (profiled: 100 us a read). Raises redis.RedisError when the connection fails."""
        pool = self._redis.connection_pool
        connection: Any = pool.get_connection()  # redis-py leaves Connection's methods untyped
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            connection.disconnect()  # replies left unread must not answer the next command on this connection
            raise
        finally:
            pool.release(connection)

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
        changes = [
            ReportChange(*sources[i][:2], sources[i][3], r.report, now, r.patch, report_text.plain_text(r))
            for i, r in found
        ]
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
        for uuid in uuids:
            self._kept.pop(uuid, None)

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


def _chunks(indices: list[int], sizes: list[int]) -> Iterator[list[int]]:
    """`indices` in runs of at most MGET_CHUNK keys and MGET_CHUNK_BYTES bytes (a run holds one key at least)."""
    chunk: list[int] = []
    total = 0
    for i in indices:
        if chunk and (len(chunk) == MGET_CHUNK or total + sizes[i] > MGET_CHUNK_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(i)
        total += sizes[i]
    if chunk:
        yield chunk
