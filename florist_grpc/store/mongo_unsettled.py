"""Writes MongoStore has not settled: events past a job's last_sequence, and sources whose last append failed.

The first are a writer's that died between inserting its events and advancing the job (or one about to
advance): the log is the truth, and readers roll the job document forward from it (`rolled_forward`).

Sources whose last append failed part-way: after an outage in the middle of an append (no transaction, or a
commit whose outcome is unknown), what reached MongoDB is unknown. The caller keeps its baselines and sends the
same sources again, with the `previous` reports it had; appended as they are, the events already written would
be appended again, and a patch taken against an out-of-date `previous` may not rebuild the report.

So the next change of such a source is rebased: its job's written events are rolled forward, and the source's
first change in the batch takes the stored report as its `previous` (no patch at all when it is already
stored). This costs a read of the job's reports once after a failure, and nothing otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pymongo.collection import Collection

from florist_grpc.domain.model import JsonObject
from florist_grpc.store.base import ReportChange
from florist_grpc.store.mongo_batch import advance_update
from florist_grpc.store.mongo_keys import escape_key, map_keys, unescape_key


def roll_forward(jobs: Collection[JsonObject], events: Collection[JsonObject], job_id: str, after: int) -> bool:
    """Apply to the job document every event past `after`, each gated on its predecessor, so that none is
    applied twice even beside a live writer; whether there was any."""
    rolled = False
    for event in events.find({"job_id": job_id, "sequence": {"$gt": after}}).sort("sequence", 1):
        sequence = event["sequence"]
        update = advance_update(sequence, json.loads(event["update"]))
        jobs.update_one({"_id": job_id, "last_sequence": sequence - 1}, update)
        rolled = True
    return rolled


def rolled_forward(jobs: Collection[JsonObject], events: Collection[JsonObject], row: JsonObject) -> JsonObject | None:
    """The job document `row` with every written event applied (None if the job is gone meanwhile)."""
    if roll_forward(jobs, events, row["_id"], row["last_sequence"]):
        return jobs.find_one({"_id": row["_id"]})
    return row


Key = tuple[str, str]  # (job id, source key)


class UnsettledSources:
    """The sources of a MongoStore's jobs whose last append failed, and how to rebase their next changes."""

    def __init__(self, jobs: Collection[JsonObject], events: Collection[JsonObject]) -> None:
        self._jobs = jobs
        self._events = events
        self._lock = threading.Lock()
        self._failures: dict[Key, int] = {}  # failures so far: a count, to settle only what was rebased

    def failed(self, changes: Iterable[ReportChange]) -> None:
        """An append of these changes raised: what it wrote is unknown."""
        with self._lock:
            for key in {(c.job_id, c.source.key) for c in changes}:
                self._failures[key] = self._failures.get(key, 0) + 1

    def rebase(self, changes: Sequence[ReportChange]) -> tuple[Sequence[ReportChange], dict[Key, int]]:
        """`changes` with the first change of each unsettled source taking the stored report as its previous;
        and the unsettled sources seen, to settle once the append succeeds."""
        with self._lock:
            seen = {k: self._failures[k] for c in changes if (k := (c.job_id, c.source.key)) in self._failures}
        if not seen:
            return changes, seen
        job_ids = list({job_id for job_id, _ in seen})
        for row in list(self._jobs.find({"_id": {"$in": job_ids}}, {"last_sequence": 1})):
            roll_forward(self._jobs, self._events, row["_id"], row["last_sequence"])
        stored = {row["_id"]: row.get("reports", {}) for row in self._jobs.find({"_id": {"$in": job_ids}})}
        out = list(changes)
        rebased: set[Key] = set()
        for i, change in enumerate(changes):
            key = (change.job_id, change.source.key)
            if key not in seen or key in rebased or change.job_id not in stored:
                continue  # a later change of a source follows its first; a job gone appends nothing anyway
            rebased.add(key)
            report = map_keys(stored[change.job_id].get(escape_key(change.source.key), {}), unescape_key)
            if report != change.previous:
                out[i] = replace(change, previous=report, patch=None)  # a patch from another baseline
        return out, seen

    def settled(self, seen: dict[Key, int]) -> None:
        """The append of rebased changes went through: these sources are settled, unless one failed since."""
        with self._lock:
            for key, failures in seen.items():
                if self._failures.get(key) == failures:
                    del self._failures[key]
