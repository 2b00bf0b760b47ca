"""MongoStore's unconfirmed stops: documents of the `site_stops` collection, keyed by the client's uuid.

A stop is written before its job's client is marked, and forgotten only after the mark is confirmed: a crash in
between leaves a stop retried once more, never a client marked with nothing retrying it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from pymongo.collection import Collection as MongoCollection

from florist_grpc.domain.model import JsonObject
from florist_grpc.store import rules
from florist_grpc.store.base import SiteStops, UnconfirmedStop

T = TypeVar("T")


class Guard(Protocol):
    """MongoStore's `_guard`: runs a store call, a MongoDB that cannot be used is UNAVAILABLE."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


class MongoSiteStops(SiteStops):
    def __init__(
        self,
        stops: MongoCollection[JsonObject],
        jobs: MongoCollection[JsonObject],
        guard: Guard,
        on_doc_change: Callable[[str], None] = lambda job_id: None,
    ) -> None:
        """`on_doc_change(job_id)`: called after a write to a job's document that logs no change of its own (the
        store's snapshots forget the job: store/client_deltas.py)."""
        self._stops = stops
        self._jobs = jobs
        self._guard = guard
        self._on_doc_change = on_doc_change

    def _mark(self, job_id: str, index: int, unconfirmed: bool) -> None:
        sets = rules.stop_unconfirmed_sets(index, unconfirmed)
        self._jobs.update_one({"_id": job_id}, {"$set": {f"doc.{path}": value for path, value in sets.items()}})
        self._on_doc_change(job_id)

    def record(self, stops: Sequence[UnconfirmedStop]) -> None:
        def run() -> None:
            for stop in stops:  # a job's few clients: one write each
                self._stops.replace_one({"_id": stop.client_uuid}, _doc(stop), upsert=True)
                self._mark(stop.job_id, stop.client_index, True)

        self._guard(run)

    def pending(self) -> list[UnconfirmedStop]:
        def run() -> list[UnconfirmedStop]:
            rows = self._stops.find().sort([("job_id", 1), ("client_index", 1)])
            return [UnconfirmedStop(r["_id"], r["agent"], r["job_id"], r["client_index"]) for r in rows]

        return self._guard(run)

    def settle(self, client_uuid: str, confirmed: bool) -> None:
        def run() -> None:
            row = self._stops.find_one({"_id": client_uuid})
            if row is None:
                return
            if confirmed:
                self._mark(row["job_id"], row["client_index"], False)
            self._stops.delete_one({"_id": client_uuid})

        self._guard(run)


def _doc(stop: UnconfirmedStop) -> JsonObject:
    return {"_id": stop.client_uuid, "agent": stop.agent, "job_id": stop.job_id, "client_index": stop.client_index}
