"""MongoStore's batch ingest: a batch of report changes in three round trips, whatever its size.

The write-ahead protocol of one append (store/mongo.py), batched: read every job of the batch (one find), insert
the events of the whole batch (one ordered insert_many; sequences N+1.. per job under the unique (job_id,
sequence) index), then advance every job document (one bulk_write of updates gated on last_sequence == N). Each
event still carries its own job-document update, so a crash between the two writes, or a concurrent writer that
took a sequence first, is repaired exactly as for a single append: whoever finds a sequence taken rolls the job
document forward from that event. Where the server supports transactions (replica set, sharded cluster), the two
writes also commit together.

A batch is applied in waves holding at most one change per (job, source): the job-document updates of one wave
then touch disjoint paths and merge into one update per job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from florist_grpc.domain import merge_patch
from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent
from florist_grpc.store import rules
from florist_grpc.store.base import ReportChange
from florist_grpc.store.codec import to_micros
from florist_grpc.store.mongo_keys import escape_key, map_keys, patch_update

MAX_WAVES = 1000
DUPLICATE_KEY = 11000


def report_update(change: ReportChange, patch: JsonObject) -> JsonObject:
    """The job-document update that applies one change to the stored report of its source."""
    prefix = f"reports.{escape_key(change.source.key)}"
    previous = change.previous
    # The first report of a source may replace a missing field whole.
    sets, unsets = (
        patch_update(prefix, previous, patch) if previous else ({prefix: map_keys(change.report, escape_key)}, {})
    )
    update: JsonObject = {"$set": sets}
    if unsets:
        update["$unset"] = unsets
    return update


def event_doc(job_id: str, sequence: int, change: ReportChange, patch: JsonObject, update: JsonObject) -> JsonObject:
    return {
        "_id": f"{job_id}/{sequence}",
        "job_id": job_id,
        "sequence": sequence,
        "time_us": to_micros(change.time),
        "source": json.dumps(asdict(change.source)),
        "patch": json.dumps(patch),
        "job_state": int(JobState.IN_PROGRESS),
        "update": json.dumps(update),
    }


@dataclass
class _Placed:
    index: int  # in the batch
    job_id: str
    sequence: int
    update: JsonObject


class BatchIngest:
    """Appends batches of report changes for one MongoStore."""

    def __init__(
        self,
        jobs: Collection[JsonObject],
        events: Collection[JsonObject],
        roll_forward: Callable[[str, int], None],
        advance: Callable[[str, int, JsonObject], None],
        transaction: Callable[[Callable[[ClientSession | None], None]], None],
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._roll_forward = roll_forward
        self._advance = advance
        self._transaction = transaction

    def append(self, changes: Sequence[ReportChange]) -> list[MetricsEvent | None]:
        patches = [merge_patch.diff(c.previous, c.report) for c in changes]
        results: list[MetricsEvent | None] = [None] * len(changes)
        todo = [i for i, patch in enumerate(patches) if patch]
        for _ in range(MAX_WAVES):
            if not todo:
                return results
            wave, later = _split_wave(todo, changes)
            retry = self._append_wave(wave, changes, patches, results)
            todo = retry + later  # a retried change precedes every later change of its source: order holds
        raise Unavailable("too much contention appending a batch of events")

    def _append_wave(
        self,
        wave: list[int],
        changes: Sequence[ReportChange],
        patches: list[JsonObject],
        results: list[MetricsEvent | None],
    ) -> list[int]:
        """Append one wave; returns the changes to retry (their sequence was taken by another writer)."""
        job_ids = sorted({changes[i].job_id for i in wave})
        rows = {row["_id"]: row for row in self._jobs.find({"_id": {"$in": job_ids}}, {"state": 1, "last_sequence": 1})}
        last = {job_id: row["last_sequence"] for job_id, row in rows.items()}
        placed: list[_Placed] = []
        # Grouped by job, so an ordered insert that stops early leaves each job a prefix of its events.
        for job_id in job_ids:
            row = rows.get(job_id)
            if row is None or not rules.accepts_reports(JobState(row["state"])):
                continue  # refused: its result stays None
            for i in wave:
                if changes[i].job_id == job_id:
                    last[job_id] += 1
                    placed.append(_Placed(i, job_id, last[job_id], report_update(changes[i], patches[i])))
        if not placed:
            return []
        docs = [event_doc(p.job_id, p.sequence, changes[p.index], patches[p.index], p.update) for p in placed]
        inserted, taken = len(docs), False

        def write(session: ClientSession | None) -> None:
            nonlocal inserted, taken
            try:
                self._events.insert_many(docs, ordered=True, session=session)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if not errors or errors[0].get("code") != DUPLICATE_KEY:
                    raise
                # Another writer owns the first sequence that failed; everything before it is ours.
                inserted, taken = int(exc.details.get("nInserted", 0)), True
                if session is not None:
                    raise  # the transaction is aborted: nothing of it was written
            self._advance_jobs(placed[:inserted], rows, session)

        try:
            self._transaction(write)
        except BulkWriteError:
            inserted = 0  # aborted transaction: retry the whole wave
        committed, rest = placed[:inserted], placed[inserted:]
        for p in committed:
            c = changes[p.index]
            results[p.index] = MetricsEvent(
                p.job_id, p.sequence, c.time, c.source, patches[p.index], JobState.IN_PROGRESS
            )
        if taken and rest:
            self._roll_forward(rest[0].job_id, rest[0].sequence)
        return sorted(p.index for p in rest)

    def _advance_jobs(self, placed: list[_Placed], rows: dict[str, JsonObject], session: ClientSession | None) -> None:
        """Advance every job document past its inserted events: one bulk write, one update per job."""
        by_job: dict[str, list[_Placed]] = {}
        for p in placed:
            by_job.setdefault(p.job_id, []).append(p)
        operations = []
        for job_id, mine in by_job.items():
            merged: dict[str, dict[str, Any]] = {}
            for p in mine:
                for op, fields in p.update.items():
                    merged.setdefault(op, {}).update(fields)
            merged.setdefault("$set", {})["last_sequence"] = mine[-1].sequence
            operations.append(UpdateOne({"_id": job_id, "last_sequence": rows[job_id]["last_sequence"]}, merged))
        if not operations:
            return
        result = self._jobs.bulk_write(operations, ordered=False, session=session)
        if result.matched_count < len(operations):
            # Another writer rolled some of our events forward meanwhile: finish event by event (each gated).
            for p in placed:
                self._advance(p.job_id, p.sequence, p.update)


def _split_wave(todo: list[int], changes: Sequence[ReportChange]) -> tuple[list[int], list[int]]:
    """The first change of each (job, source) in `todo`, and the rest in order."""
    seen: set[tuple[str, str]] = set()
    wave: list[int] = []
    later: list[int] = []
    for i in todo:
        key = (changes[i].job_id, changes[i].source.key)
        (later if key in seen else wave).append(i)
        seen.add(key)
    return wave, later
