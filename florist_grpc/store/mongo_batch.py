"""MongoStore's batch ingest: a batch of report changes in three round trips, whatever its size.

The write-ahead protocol of one append (store/mongo.py), batched: read every job of the batch (one find), insert
the events of the whole batch (one ordered insert_many; sequences N+1.. per job under the unique (job_id,
sequence) index), then advance every job document (one ordered bulk_write of updates, each gated on the
job's last_sequence). Each event still carries its own job-document update, so a crash between the two writes,
or a concurrent writer that took a sequence first, is repaired exactly as for one append: whoever finds a
sequence taken rolls the job document forward from that event. Where the server has transactions (replica set,
sharded cluster), the two writes also commit together.

A change MongoDB refuses stops the ordered insert at that change; what was inserted before it is advanced as
usual. The server names the event it refused: that change is set aside and the rest retried as a batch. pymongo
refuses before sending (an event over 16 MiB: DocumentTooLarge) without saying which: the rest of the batch goes
through the per-change path, which sets aside exactly that change and appends the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import bson
from bson.errors import BSONError, InvalidDocument
from pymongo import UpdateOne
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent, Source
from florist_grpc.domain.report_layout import current_round
from florist_grpc.store import rules
from florist_grpc.store.base import ReportChange, SetAside
from florist_grpc.store.codec import to_micros
from florist_grpc.store.mongo_keys import escape_key, map_keys, patch_update

Outcome = MetricsEvent | SetAside | None
_Patches = dict[int, tuple[JsonObject, str, JsonObject]]  # by index in the batch: patch, its text, its update
DUPLICATE_KEY = 11000
_MAX_ATTEMPTS = 1000


def report_update(change: ReportChange, patch: JsonObject) -> JsonObject:
    """The job-document update that applies one change to the stored report of its source."""
    prefix = f"reports.{escape_key(change.source.key)}"
    # The first report of a source may replace a missing field whole.
    sets, unsets = (
        patch_update(prefix, change.previous, patch)
        if change.previous
        else ({prefix: map_keys(change.report, escape_key)}, {})
    )
    if moves_round(change):
        sets["current_round"] = current_round(change.report)
    update: JsonObject = {"$set": sets}
    if unsets:
        update["$unset"] = unsets
    return update


def moves_round(change: ReportChange) -> bool:
    """This change moves its job's current round (then its event's update also sets it)."""
    return rules.round_after(change.source, change.report, current_round(change.previous)) is not None


def storable_update(change: ReportChange, patch: JsonObject) -> JsonObject | SetAside:
    """report_update, or SetAside if BSON cannot hold it (an integer beyond 64 bits). Checked before the event
    is written: the event keeps its update as text and would insert fine, and the job document could then never
    be advanced past it (every later append and read would roll it forward and fail again)."""
    update = report_update(change, patch)
    try:
        bson.encode(update)
    except (BSONError, OverflowError) as exc:
        return SetAside(f"MongoDB cannot store it: {exc}")
    return update


def event_doc(
    job_id: str, sequence: int, time: datetime, source: Source, patch: str, job_state: JobState, update: JsonObject
) -> JsonObject:
    """The stored event: its patch as JSON text, and the job-document update that a roll-forward applies."""
    return {
        "_id": f"{job_id}/{sequence}",
        "job_id": job_id,
        "sequence": sequence,
        "time_us": to_micros(time),
        "source": json.dumps(asdict(source)),
        "patch": patch,
        "job_state": int(job_state),
        "update": json.dumps(update),
    }


def advance_update(sequence: int, update: JsonObject) -> JsonObject:
    """`update` that also moves the job's last_sequence to `sequence` (gated on sequence - 1 by the caller)."""
    out: dict[str, dict[str, Any]] = {op: dict(fields) for op, fields in update.items()}
    out.setdefault("$set", {})["last_sequence"] = sequence
    return out


@dataclass(frozen=True)
class _Placed:
    """One change of the batch, given its sequence."""

    index: int  # in the batch
    job_id: str
    sequence: int
    source_key: str
    update: JsonObject


@dataclass(frozen=True)
class _Written:
    """How an attempt's insert went: how many of its events (a prefix) are in, and what stopped it."""

    inserted: int
    taken: _Placed | None = None  # another writer owns this event's sequence: roll forward, retry the rest
    refused: tuple[_Placed, str] | None = None  # the server refused this event (why): set it aside, retry the rest
    unencodable: bool = False  # pymongo refused an event before sending it (which?): the rest goes one by one


class BatchIngest:
    """Appends batches of report changes for one MongoStore."""

    def __init__(
        self,
        jobs: Collection[JsonObject],
        events: Collection[JsonObject],
        roll_forward: Callable[[str, int], None],
        append_one: Callable[[ReportChange], Outcome],
        start_session: Callable[[], ClientSession] | None,
    ) -> None:
        """`roll_forward(job_id, sequence)` applies a stored event's update; `append_one` is the per-change path;
        `start_session` is given only where the server has multi-document transactions."""
        self._jobs = jobs
        self._events = events
        self._roll_forward = roll_forward
        self._append_one = append_one
        self._start_session = start_session

    def append(self, changes: Sequence[ReportChange]) -> list[Outcome]:
        """The contract of JobStore.append_report_changes, for the whole batch at once."""
        results: list[Outcome] = [None] * len(changes)
        patches: _Patches = {}
        for i, change in enumerate(changes):
            patch = change.merge_patch()
            if not patch:
                continue
            text = rules.patch_text(patch)
            if isinstance(text, SetAside):
                results[i] = text
            elif isinstance(update := storable_update(change, patch), SetAside):
                results[i] = update
            else:
                patches[i] = (patch, text, update)
        todo = sorted(patches)
        for _ in range(_MAX_ATTEMPTS):
            if not todo:
                return results
            todo, one_by_one = self._attempt(todo, changes, patches, results)
            if one_by_one:  # the per-change path sets aside exactly the change pymongo cannot encode
                for i in todo:
                    results[i] = self._append_one(changes[i])
                return results
        raise Unavailable("too much contention appending a batch of events", reason="STORE_UNAVAILABLE")

    def _attempt(
        self,
        todo: list[int],
        changes: Sequence[ReportChange],
        patches: _Patches,
        results: list[Outcome],
    ) -> tuple[list[int], bool]:
        """Append what it can of `todo`; returns the changes still to do, and whether to do them one by one."""
        by_job: dict[str, list[int]] = {}
        for i in todo:
            by_job.setdefault(changes[i].job_id, []).append(i)
        rows = {
            row["_id"]: row for row in self._jobs.find({"_id": {"$in": list(by_job)}}, {"state": 1, "last_sequence": 1})
        }
        placed: list[_Placed] = []
        # Grouped by job, so an ordered insert that stops early leaves each job a prefix of its events.
        for job_id, indices in by_job.items():
            row = rows.get(job_id)
            if row is None or not rules.accepts_reports(JobState(row["state"])):
                continue  # not running: its results stay None, as on the per-change path
            for offset, i in enumerate(indices, start=1):
                sequence = row["last_sequence"] + offset
                placed.append(_Placed(i, job_id, sequence, changes[i].source.key, patches[i][2]))
        if not placed:
            return [], False
        written = self._write(placed, changes, patches)
        for p in placed[: written.inserted]:
            c = changes[p.index]
            results[p.index] = MetricsEvent(
                p.job_id, p.sequence, c.time, c.source, patches[p.index][0], JobState.IN_PROGRESS
            )
        rest = placed[written.inserted :]
        if written.taken is not None:
            self._roll_forward(written.taken.job_id, written.taken.sequence)
        if written.refused is not None:
            refused, reason = written.refused
            results[refused.index] = SetAside(f"MongoDB refused it: {reason}")
            rest = [p for p in rest if p is not refused]
        return sorted(p.index for p in rest), written.unencodable

    def _write(self, placed: list[_Placed], changes: Sequence[ReportChange], patches: _Patches) -> _Written:
        batch = uuid.uuid4().hex  # marks this attempt's events, to tell which are in after a refusal
        docs = [
            {
                **event_doc(
                    p.job_id,
                    p.sequence,
                    changes[p.index].time,
                    changes[p.index].source,
                    patches[p.index][1],
                    JobState.IN_PROGRESS,
                    p.update,
                ),
                "batch": batch,
            }
            for p in placed
        ]
        if self._start_session is None:
            return self._write_without_transaction(placed, docs, batch)
        try:
            with self._start_session() as session:
                session.with_transaction(lambda s: self._insert_and_advance(placed, docs, s))
        except BulkWriteError as exc:
            return _stopped(exc, placed, inserted=0)  # the transaction was aborted: nothing of it is in
        except InvalidDocument:
            return _Written(0, unencodable=True)
        return _Written(len(placed))

    def _write_without_transaction(self, placed: list[_Placed], docs: list[JsonObject], batch: str) -> _Written:
        try:
            self._events.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            # Ordered: the events before the failed one are in (and ours), none after it.
            written = _stopped(exc, placed, inserted=int(exc.details.get("nInserted", 0)))
        except InvalidDocument:
            # Refused while encoding: the batches of events sent before it are in. Count ours.
            ids = [doc["_id"] for doc in docs]
            inserted = self._events.count_documents({"_id": {"$in": ids}, "batch": batch})
            written = _Written(inserted, unencodable=True)
        else:
            written = _Written(len(placed))
        self._advance(placed[: written.inserted], None)
        return written

    def _insert_and_advance(self, placed: list[_Placed], docs: list[JsonObject], session: ClientSession) -> None:
        self._events.insert_many(docs, ordered=True, session=session)
        try:
            self._advance(placed, session)
        except BulkWriteError as exc:
            # A job update the server refused (a job document over 16 MiB): not an event to set aside, and its
            # error indexes the updates, not the events. An outage of the store, as on the per-change path.
            raise OperationFailure(f"advancing the jobs failed: {exc}") from exc

    def _advance(self, placed: list[_Placed], session: ClientSession | None) -> None:
        """Advance the job documents past the inserted events: one ordered bulk write. Consecutive events of a
        job from distinct sources touch disjoint paths and merge into one update (one document rewrite)."""
        if not placed:
            return
        operations: list[UpdateOne] = []
        run: list[_Placed] = []
        for p in placed:
            if run and (p.job_id != run[0].job_id or p.source_key in {q.source_key for q in run}):
                operations.append(_merged(run))
                run = []
            run.append(p)
        operations.append(_merged(run))
        try:
            result = self._jobs.bulk_write(operations, ordered=True, session=session)
            complete = result.matched_count == len(operations)
        except InvalidDocument:  # merged updates over 16 MiB together: they go one by one below
            complete = False
        if not complete:
            # Another writer rolled some of these events forward meanwhile (or a merge was too large): finish
            # event by event, each gated on its predecessor, so none is applied twice.
            for p in placed:
                self._jobs.update_one(
                    {"_id": p.job_id, "last_sequence": p.sequence - 1},
                    advance_update(p.sequence, p.update),
                    session=session,
                )


def _merged(run: list[_Placed]) -> UpdateOne:
    merged: dict[str, dict[str, Any]] = {}
    for p in run:
        for op, fields in p.update.items():
            merged.setdefault(op, {}).update(fields)
    first, last = run[0], run[-1]
    return UpdateOne({"_id": first.job_id, "last_sequence": first.sequence - 1}, advance_update(last.sequence, merged))


def _stopped(exc: BulkWriteError, placed: list[_Placed], inserted: int) -> _Written:
    """What stopped an ordered insert: a sequence another writer took, or an event the server refused."""
    errors = exc.details.get("writeErrors", [])
    if not errors:
        raise exc  # only a write concern failed: an outage, not this batch's fault
    stopped = placed[int(errors[0]["index"])]
    if errors[0].get("code") == DUPLICATE_KEY:
        return _Written(inserted, taken=stopped)
    return _Written(inserted, refused=(stopped, str(errors[0].get("errmsg", ""))))
