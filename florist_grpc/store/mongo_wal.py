"""MongoStore's event log as write-ahead log: one append, and the roll-forward that repairs a crash between its
two writes (store/mongo.py tells the protocol)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import JobState, JsonObject, MetricsEvent, Source
from florist_grpc.store.mongo_batch import advance_update, event_doc

_MAX_APPEND_ATTEMPTS = 1000
# What an append writes, planned from the job document (None: nothing, e.g. the job is not in the right state).
Plan = Callable[[JsonObject], tuple[Source, JsonObject, JobState, JsonObject] | None]


class EventLog:
    def __init__(self, jobs: Collection[JsonObject], events: Collection[JsonObject]) -> None:
        self._jobs = jobs
        self._events = events

    def advance(self, job_id: str, sequence: int, update: JsonObject) -> None:
        """Apply the job-document update of event `sequence` if the document is right before it."""
        self._jobs.update_one({"_id": job_id, "last_sequence": sequence - 1}, advance_update(sequence, update))

    def roll_forward(self, job_id: str, sequence: int) -> None:
        event = self._events.find_one({"job_id": job_id, "sequence": sequence})
        if event is not None:
            self.advance(job_id, sequence, json.loads(event["update"]))

    def append(self, job_id: str, time: datetime, plan: Plan) -> MetricsEvent | None:
        """Insert the planned event under the job's next sequence (whoever inserts it owns it), then advance the
        job document; a sequence another writer took is rolled forward and the plan made again."""
        for _ in range(_MAX_APPEND_ATTEMPTS):
            row = self._jobs.find_one({"_id": job_id}, {"reports": 0})
            if row is None:
                return None
            planned = plan(row)
            if planned is None:
                return None
            source, patch, job_state, update = planned
            sequence = row["last_sequence"] + 1
            try:
                self._events.insert_one(event_doc(job_id, sequence, time, source, json.dumps(patch), job_state, update))
            except DuplicateKeyError:
                self.roll_forward(job_id, sequence)
                continue
            self.advance(job_id, sequence, update)
            return MetricsEvent(job_id, sequence, time, source, patch, job_state)
        raise Unavailable(f"job {job_id}: too much contention appending an event", reason="STORE_UNAVAILABLE")
