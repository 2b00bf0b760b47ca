"""MongoStore's changes log: a counter document (`$inc`) hands out revisions, a `changes` collection holds the log.

A standalone MongoDB has no multi-document transaction, so a change is logged right after the write it describes:
take the next revision, read the job as it is now, insert the change, stamp the job (`$max`, so a later revision
is never overwritten by an earlier one). Writers of one control plane log their changes one at a time (the
feed's lock), so the log is in revision order and listeners get changes in that order. What is not covered: a
control plane that dies between a write and its change (the job is right; the log misses that one change until
the job's next), and changes made by another control plane on the same database (logged, replayed by a watch that
reads the log, but not pushed live to this one's watchers).
"""

from __future__ import annotations

import json
from dataclasses import replace

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from florist_grpc.domain.model import ChangeType, ClientState, Job, JobChange, JobState, JsonObject
from florist_grpc.store import rules
from florist_grpc.store.change_feed import TRIM_EVERY, ChangeFeed
from florist_grpc.store.client_deltas import Rebuilder, Row, Snapshots, apply_delta, delta_doc, trim_cut
from florist_grpc.store.codec import snapshot_to_doc

_COUNTER = "revision"


class MongoChanges:
    def __init__(self, db: Database[JsonObject], keep: int) -> None:
        self._counters: Collection[JsonObject] = db["counters"]
        self._changes: Collection[JsonObject] = db["changes"]
        self._keep = keep
        self.feed = ChangeFeed()
        self.snapshots = Snapshots()  # the latest snapshot logged of each job (store/client_deltas.py)

    def forget(self, job_id: str) -> None:
        """A write that logs no change altered the job's document: its next change is logged whole. Under the
        feed's lock, so that a delta being logged cannot put back the snapshot just forgotten."""
        with self.feed.ordered():
            self.snapshots.forget(job_id)

    def current(self) -> int:
        row = self._counters.find_one({"_id": _COUNTER})
        return int(row["value"]) if row else 0

    def record(self, jobs: Collection[JsonObject], job: Job, type_: ChangeType, previous: JobState) -> Job:
        """Log the change `job` (read after the write) went through and hand it to the feed's listeners; the job
        as logged (stamped with its revision)."""
        with self.feed.ordered() as made:
            counter = self._counters.find_one_and_update(
                {"_id": _COUNTER}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            assert counter is not None  # upserted
            revision = int(counter["value"])
            job = replace(
                job, revision=revision, server_metrics={}, clients=[replace(c, metrics={}) for c in job.clients]
            )
            self._changes.insert_one(
                {
                    "_id": revision,
                    "job_id": job.id,
                    "type": int(type_),
                    "previous_state": int(previous),
                    "job": json.dumps(snapshot_to_doc(job)),
                }
            )
            if type_ is not ChangeType.DELETED:
                jobs.update_one({"_id": job.id}, {"$max": {"revision": revision}})
                self.snapshots.logged_whole(job)
            else:
                self.snapshots.forget(job.id)
            self._trim(revision)
            made.append(JobChange(revision, type_, job, previous))
        return job

    def record_client(
        self, jobs: Collection[JsonObject], job_id: str, index: int, state: ClientState, error_message: str
    ) -> bool:
        """Log a client's state change (just written) as a delta of the job's latest snapshot, O(1) in its
        clients (store/client_deltas.py); False if that snapshot is not known: the caller logs the job whole."""
        with self.feed.ordered() as made:
            row = jobs.find_one({"_id": job_id}, {"revision": 1, "state": 1, "last_sequence": 1, "current_round": 1})
            if row is None or (logged := self.snapshots.latest(job_id, int(row.get("revision", 0)))) is None:
                return False
            counter = self._counters.find_one_and_update(
                {"_id": _COUNTER}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            assert counter is not None  # upserted
            revision = int(counter["value"])
            delta = delta_doc(index, state, error_message, int(row["last_sequence"]), int(row.get("current_round", 0)))
            self._changes.insert_one(
                {
                    "_id": revision,
                    "job_id": job_id,
                    "type": int(ChangeType.MODIFIED),
                    "previous_state": int(logged.job.state),
                    "job": json.dumps(delta),
                    "base": logged.base,
                }
            )
            jobs.update_one({"_id": job_id}, {"$max": {"revision": revision}})
            job = apply_delta(logged.job, delta, revision)
            self.snapshots.logged_delta(logged, job)
            self._trim(revision)
            made.append(JobChange(revision, ChangeType.MODIFIED, job, logged.job.state))
        return True

    def _trim(self, revision: int) -> None:
        if revision % TRIM_EVERY:
            return

        def oldest_base_after(cut: int) -> int | None:
            kept = {"_id": {"$gt": cut}, "base": {"$ne": None}}
            needed = next(iter(self._changes.find(kept, {"base": 1}).sort("base", 1).limit(1)), None)
            return int(needed["base"]) if needed else None

        self._changes.delete_many({"_id": {"$lte": trim_cut(revision, self._keep, oldest_base_after)}})

    def read(self, after: int, limit: int) -> list[JobChange]:
        current = self.current()
        oldest = next(iter(self._changes.find({}, {"_id": 1}).sort("_id", 1).limit(1)), None)
        if (problem := rules.out_of_range(after, current, oldest["_id"] if oldest else None)) is not None:
            raise problem
        rows = self._changes.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit)

        def chain(job_id: str, base: int, before: int) -> list[Row]:
            found = self._changes.find({"_id": {"$gte": base, "$lt": before}, "job_id": job_id}).sort("_id", 1)
            return [_row(r) for r in found]

        rebuilt = Rebuilder(chain)
        return [
            JobChange(int(r["_id"]), ChangeType(r["type"]), rebuilt.snapshot(_row(r)), JobState(r["previous_state"]))
            for r in rows
        ]


def _row(row: JsonObject) -> Row:
    base = row.get("base")
    return int(row["_id"]), str(row["job_id"]), json.loads(row["job"]), None if base is None else int(base)
