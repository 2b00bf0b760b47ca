"""Jobs whose last append failed part-way: after an outage in the middle of an append (no transaction, or a
commit whose outcome is unknown), what reached MongoDB is unknown. The caller keeps its baselines and sends the
same sources again, with the `previous` reports it had; appended as they are, the events already written would
be appended again, and a patch taken against an out-of-date `previous` may not rebuild the report.

So the next changes of such a job are rebased: its written events are rolled forward, and each source's first
change in the batch takes the stored report as its `previous` (no patch at all when it is already stored). This
costs a read of the job's reports once after a failure, and nothing otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from pymongo.collection import Collection

from florist_grpc.domain.model import JsonObject
from florist_grpc.store.base import ReportChange
from florist_grpc.store.mongo_keys import escape_key, map_keys, unescape_key


class UnsettledJobs:
    """The jobs of a MongoStore whose last append failed, and how to rebase their next changes."""

    def __init__(self, jobs: Collection[JsonObject], roll_forward_all: Callable[[str, int], bool]) -> None:
        self._jobs = jobs
        self._roll_forward_all = roll_forward_all
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
                self._roll_forward_all(job_id, row["last_sequence"])
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
