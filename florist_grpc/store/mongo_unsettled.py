"""Writes MongoStore has not settled: events past a job's last_sequence, and jobs whose last append failed.

The first are a writer's that died between inserting its events and advancing the job (or one about to
advance): the log is the truth, and readers roll the job document forward from it (`rolled_forward`).

Jobs whose last append failed part-way: after an outage in the middle of an append (no transaction, or a
commit whose outcome is unknown), what reached MongoDB is unknown. The caller keeps its baselines and sends the
same sources again, with the `previous` reports it had; appended as they are, the events already written would
be appended again, and a patch taken against an out-of-date `previous` may not rebuild the report.

So the next changes of such a job are rebased: its written events are rolled forward, and each source's first
change in the batch takes the stored report as its `previous` (no patch at all when it is already stored). This
costs a read of the job's reports once after a failure, and nothing otherwise.
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


class UnsettledJobs:
    """The jobs of a MongoStore whose last append failed, and how to rebase their next changes."""

    def __init__(self, jobs: Collection[JsonObject], events: Collection[JsonObject]) -> None:
        self._jobs = jobs
        self._events = events
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}  # job id -> failures so far (a count, to settle only what was rebased)

    def failed(self, job_ids: Iterable[str]) -> None:
        """An append of these jobs raised: what it wrote is unknown."""
        with self._lock:
            for job_id in set(job_ids):
                self._failures[job_id] = self._failures.get(job_id, 0) + 1

    def rebase(self, changes: Sequence[ReportChange]) -> tuple[Sequence[ReportChange], dict[str, int]]:
        """`changes` with the first change of each source of an unsettled job taking the stored report as its
        previous; and the unsettled jobs seen, to settle once the append succeeds."""
        with self._lock:
            seen = {c.job_id: self._failures[c.job_id] for c in changes if c.job_id in self._failures}
        if not seen:
            return changes, seen
        for job_id in seen:
            row = self._jobs.find_one({"_id": job_id}, {"last_sequence": 1})
            if row is not None:
                roll_forward(self._jobs, self._events, job_id, row["last_sequence"])
        stored = {row["_id"]: row.get("reports", {}) for row in self._jobs.find({"_id": {"$in": list(seen)}})}
        out = list(changes)
        rebased: set[tuple[str, str]] = set()
        for i, change in enumerate(changes):
            key = (change.job_id, change.source.key)
            if change.job_id not in stored or key in rebased:
                continue  # a job gone keeps its changes (they append nothing); a later change follows the first
            rebased.add(key)
            report = map_keys(stored[change.job_id].get(escape_key(change.source.key), {}), unescape_key)
            if report != change.previous:
                out[i] = replace(change, previous=report)
        return out, seen

    def settled(self, seen: dict[str, int]) -> None:
        """The append of rebased changes went through: these jobs are settled, unless one failed again since."""
        with self._lock:
            for job_id, failures in seen.items():
                if self._failures.get(job_id) == failures:
                    del self._failures[job_id]
