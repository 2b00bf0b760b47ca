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

from florist_grpc.domain.model import ChangeType, Job, JobChange, JobState, JsonObject
from florist_grpc.store import rules
from florist_grpc.store.change_feed import TRIM_EVERY, ChangeFeed
from florist_grpc.store.codec import snapshot_from_doc, snapshot_to_doc

_COUNTER = "revision"


class MongoChanges:
    def __init__(self, db: Database[JsonObject], keep: int) -> None:
        self._counters: Collection[JsonObject] = db["counters"]
        self._changes: Collection[JsonObject] = db["changes"]
        self._keep = keep
        self.feed = ChangeFeed()

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
            if revision % TRIM_EVERY == 0:
                self._changes.delete_many({"_id": {"$lte": revision - self._keep}})
            made.append(JobChange(revision, type_, job, previous))
        return job

    def read(self, after: int, limit: int) -> list[JobChange]:
        current = self.current()
        oldest = next(iter(self._changes.find({}, {"_id": 1}).sort("_id", 1).limit(1)), None)
        if (problem := rules.out_of_range(after, current, oldest["_id"] if oldest else None)) is not None:
            raise problem
        rows = self._changes.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit)
        return [
            JobChange(
                int(r["_id"]),
                ChangeType(r["type"]),
                snapshot_from_doc(r["job_id"], json.loads(r["job"])),
                JobState(r["previous_state"]),
            )
            for r in rows
        ]
