"""MongoStore (pymongo): for production and for several control-plane replicas sharing one database.

MongoDB has no multi-document transaction on a standalone server, so the event log doubles as a write-ahead log:
an append first inserts the event under a unique (job_id, sequence) -- whoever inserts sequence N owns it -- and
then advances the job document with an update gated on `last_sequence == N - 1`. A writer that finds sequence N
already taken rolls the job document forward from that event and retries. A crash between the two steps is
therefore repaired by the next writer (or reader), and concurrent writers (threads or replicas) never get the
same number. Report changes come in batches, appended by the same protocol in one insert_many and one bulk_write
(store/mongo_batch.py).

Report field names may contain '.', '$', '%' and NUL (metric names do); they are escaped in stored reports so that
an update can `$set` only the paths that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

import pymongo
from bson.errors import InvalidDocument
from pymongo.collection import Collection as MongoCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from florist_grpc.domain.errors import Unavailable
from florist_grpc.domain.model import (
    JOB_SOURCE,
    ChangeType,
    ClientState,
    Job,
    JobChange,
    JobState,
    JsonObject,
    Launch,
    MetricsEvent,
    Source,
)
from florist_grpc.domain.projects import DEFAULT_PROJECT
from florist_grpc.store import rules
from florist_grpc.store.base import JobStore, PageCursor, ReportChange, SetAside
from florist_grpc.store.change_feed import KEEP_CHANGES
from florist_grpc.store.codec import job_to_doc, to_micros
from florist_grpc.store.mongo_batch import BatchIngest, moves_round, storable_update
from florist_grpc.store.mongo_changes import MongoChanges
from florist_grpc.store.mongo_reads import job_of, read_events
from florist_grpc.store.mongo_stops import MongoSiteStops
from florist_grpc.store.mongo_unsettled import UnsettledSources, rolled_forward
from florist_grpc.store.mongo_wal import EventLog

T = TypeVar("T")


class MongoStore(JobStore):
    def __init__(
        self,
        client: pymongo.MongoClient[JsonObject],
        database: str = "florist",
        *,
        batch_ingest: bool = True,
        keep_changes: int = KEEP_CHANGES,
    ) -> None:
        """`batch_ingest=False` appends report changes one by one (the path a refused change falls back to);
        `keep_changes`: how many of the latest changes the changes log keeps at least."""
        self._client = client
        self.database = database
        db = client[database]
        self._changes = MongoChanges(db, keep_changes)
        self._jobs: MongoCollection[JsonObject] = db["jobs"]
        self._events: MongoCollection[JsonObject] = db["events"]
        self._guard(self._create_indexes)
        sessions = self._client.start_session if self._has_transactions() else None
        self._log = EventLog(self._jobs, self._events)
        self._batch = BatchIngest(self._jobs, self._events, self._log.roll_forward, self._append_one, sessions)
        self._batch_ingest = batch_ingest
        self._unsettled = UnsettledSources(self._jobs, self._events)
        self.stops = MongoSiteStops(db["site_stops"], self._jobs, self._guard, self._changes.forget)

    @classmethod
    def from_uri(cls, uri: str) -> MongoStore:
        # Bounded timeouts: a down MongoDB gives UNAVAILABLE within seconds instead of hanging a call.
        client: pymongo.MongoClient[JsonObject] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=30000, tz_aware=True
        )
        return cls(client, client.get_default_database("florist").name)

    def _create_indexes(self) -> None:
        self._jobs.create_index([("request_id", 1)], unique=True, partialFilterExpression={"request_id": {"$gt": ""}})
        self._jobs.create_index([("create_us", -1), ("_id", -1)])
        self._jobs.create_index([("state", 1), ("create_us", -1), ("_id", -1)])
        self._jobs.create_index([("project", 1), ("create_us", -1), ("_id", -1)])
        self._events.create_index([("job_id", 1), ("sequence", 1)], unique=True)

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise Unavailable(f"job store unavailable: {exc}", reason="STORE_UNAVAILABLE") from exc

    def _has_transactions(self) -> bool:
        """Multi-document transactions need a replica set or a sharded cluster (mongos), not a standalone server."""
        try:
            hello: JsonObject = self._guard(lambda: self._client.admin.command("hello"))
        except NotImplementedError:  # mongomock: no transactions; the write-ahead event log alone holds
            return False
        return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"

    def ping(self) -> None:
        self._guard(lambda: self._client.admin.command("ping"))

    def _recorded(self, job_id: str, type_: ChangeType, previous: JobState | None = None) -> Job | None:
        """Log the change the job just went through (it is read as it is now, without its reports)."""
        # Read and logged under the feed's lock: else a client's delta could come between, then this older job.
        with self._changes.feed.ordered():
            row = self._jobs.find_one({"_id": job_id}, {"reports": 0})
            if row is None:
                return None
            job = job_of(row)
            return self._changes.record(self._jobs, job, type_, job.state if previous is None else previous)

    def create_job(self, job: Job, request_id: str = "") -> Job:
        def run() -> Job:
            row: JsonObject = {
                "_id": job.id,
                "create_us": to_micros(job.create_time),
                "state": int(job.state),
                "project": job.project,
                "last_sequence": 0,
                "doc": job_to_doc(job),
                "reports": {},
            }
            if request_id:
                row["request_id"] = request_id
            try:
                self._jobs.insert_one(row)
            except DuplicateKeyError:
                existing = self._jobs.find_one({"request_id": request_id}) if request_id else None
                if existing is None:
                    raise
                return job_of(existing)
            return self._recorded(job.id, ChangeType.ADDED, JobState.UNSPECIFIED) or job

        return self._guard(run)

    def get_job(self, job_id: str) -> Job | None:
        def run() -> JsonObject | None:
            row = self._jobs.find_one({"_id": job_id})
            return None if row is None else rolled_forward(self._jobs, self._events, row)

        row = self._guard(run)
        return job_of(row) if row is not None else None

    def list_jobs(
        self, page_size: int, after: PageCursor | None, state: JobState, projects: Collection[str] | None = None
    ) -> list[Job]:
        def run() -> list[Job]:
            query: JsonObject = {}
            if state is not JobState.UNSPECIFIED:
                query["state"] = int(state)
            if projects is not None:
                # Jobs stored before projects have no field: they are the default project's.
                query["project"] = {"$in": [*projects, *([None] if DEFAULT_PROJECT in projects else [])]}
            if after is not None:
                us = to_micros(after.create_time)
                query["$or"] = [{"create_us": {"$lt": us}}, {"create_us": us, "_id": {"$lt": after.job_id}}]
            rows = self._jobs.find(query).sort([("create_us", -1), ("_id", -1)]).limit(page_size)
            return [job_of(row) for row in rows]

        return self._guard(run)

    def delete_job(self, job_id: str) -> bool:
        def run() -> bool:
            while True:
                row = self._jobs.find_one({"_id": job_id}, {"state": 1})
                if row is None:
                    return False
                rules.check_deletable(job_id, JobState(row["state"]))
                last = self._jobs.find_one({"_id": job_id}, {"reports": 0})
                # Deleted only in the state just checked; a job started meanwhile is read and checked again.
                if last is not None and self._jobs.delete_one({"_id": job_id, "state": row["state"]}).deleted_count:
                    self._events.delete_many({"job_id": job_id})
                    gone = job_of(last)
                    self._changes.record(self._jobs, gone, ChangeType.DELETED, gone.state)
                    return True

        return self._guard(run)

    def transition(
        self,
        job_id: str,
        from_states: Collection[JobState],
        to_state: JobState,
        time: datetime,
        error_message: str = "",
        reason: str = "",
    ) -> MetricsEvent | None:
        previous: list[JobState] = []

        def plan(row: JsonObject) -> tuple[Source, JsonObject, JobState, JsonObject] | None:
            change = rules.state_change(JobState(row["state"]), from_states, to_state, time, error_message, reason)
            if change is None:
                return None
            previous[:] = [JobState(row["state"])]
            sets: JsonObject = {"state": int(change.state)}
            if change.start_us is not None:
                sets["start_us"] = change.start_us
            if change.end_us is not None:
                sets["end_us"] = change.end_us
            if change.queue_us is not None:
                sets["queue_us"] = change.queue_us
            if change.error_message:
                sets["doc.error_message"] = change.error_message
            for path, value in rules.settled_client_sets(row["doc"]["clients"], to_state).items():
                sets[f"doc.{path}"] = value
            return JOB_SOURCE, change.patch, to_state, {"$set": sets}

        def run() -> MetricsEvent | None:
            event = self._log.append(job_id, time, plan)
            if event is not None:
                self._recorded(job_id, ChangeType.MODIFIED, previous[0])
            return event

        return self._guard(run)

    def append_report_changes(self, changes: Sequence[ReportChange]) -> list[MetricsEvent | SetAside | None]:
        def run() -> list[MetricsEvent | SetAside | None]:
            # Rebased after a failed append (store/mongo_unsettled.py); a batch is one insert_many + one bulk_write.
            rebased, unsettled = self._unsettled.rebase(changes)
            results = self._batch.append(rebased) if self._batch_ingest else [self._append_one(c) for c in rebased]
            self._unsettled.settled(unsettled)
            # The current round moved with these events (their updates set it): a job-level change each.
            for job_id in dict.fromkeys(
                c.job_id
                for c, r in zip(rebased, results, strict=True)
                if isinstance(r, MetricsEvent) and moves_round(c)
            ):
                self._recorded(job_id, ChangeType.MODIFIED)
            return results

        try:
            return self._guard(run)
        except Exception:
            self._unsettled.failed(changes)
            raise

    def _append_one(self, change: ReportChange) -> MetricsEvent | SetAside | None:
        """One change as its own write-ahead append."""
        patch = change.merge_patch()
        if not patch:
            return None
        if isinstance(refused := rules.patch_text(patch), SetAside):
            return refused
        if isinstance(update := storable_update(change, patch), SetAside):
            return update

        def plan(row: JsonObject) -> tuple[Source, JsonObject, JobState, JsonObject] | None:
            if not rules.accepts_reports(JobState(row["state"])):
                return None
            return change.source, patch, JobState.IN_PROGRESS, update

        try:
            return self._guard(lambda: self._log.append(change.job_id, change.time, plan))
        except InvalidDocument as exc:  # e.g. over 16 MiB: no event was inserted
            return SetAside(f"MongoDB refused it: {exc}")

    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        return self._guard(lambda: read_events(self._events, job_id, after_sequence, limit))

    def _update_doc(self, job_id: str, sets: dict[str, Any], log: Callable[[], bool] = lambda: False) -> None:
        """Apply `sets` to the job's document and log the change: by `log`, or whole if it does not."""
        update = {"$set": {f"doc.{path}": value for path, value in sets.items()}}

        def run() -> None:
            if self._jobs.update_one({"_id": job_id}, update).matched_count and not log():
                self._recorded(job_id, ChangeType.MODIFIED)

        self._guard(run)

    def record_launch(self, job_id: str, launch: Launch) -> None:
        self._update_doc(job_id, rules.launch_sets(launch))

    def set_client_state(self, job_id: str, index: int, state: ClientState, error_message: str = "") -> None:
        # Logged as a delta where the job's latest snapshot is known: O(1) in its clients (store/client_deltas.py).
        sets = rules.client_state_sets(index, state, error_message)
        self._update_doc(
            job_id, sets, lambda: self._changes.record_client(self._jobs, job_id, index, state, error_message)
        )

    def jobs_in_state(self, state: JobState) -> list[Job]:
        def run() -> list[Job]:
            # Rolled forward: recovery's baselines must hold every written event (else it appends them again).
            rows = [
                rolled_forward(self._jobs, self._events, row) for row in list(self._jobs.find({"state": int(state)}))
            ]
            return [job_of(row) for row in rows if row is not None and row["state"] == int(state)]

        return self._guard(run)

    def count_jobs_by_state(self) -> dict[JobState, int]:
        def run() -> dict[JobState, int]:
            groups = self._jobs.aggregate([{"$group": {"_id": "$state", "count": {"$sum": 1}}}])
            return {JobState(g["_id"]): int(g["count"]) for g in groups}

        return self._guard(run)

    def current_revision(self) -> int:
        return self._guard(self._changes.current)

    def read_changes(self, after_revision: int, limit: int = 1000) -> list[JobChange]:
        return self._guard(lambda: self._changes.read(after_revision, limit))

    def on_change(self, listener: Callable[[JobChange], None]) -> None:
        self._changes.feed.subscribe(listener)

    def close(self) -> None:
        self._client.close()
