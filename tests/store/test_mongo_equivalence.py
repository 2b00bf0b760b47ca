"""MongoStore's batch path appends exactly what its per-change path appends (hypothesis); how it stores keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florist_grpc.domain.model import SERVER_SOURCE, JsonObject
from florist_grpc.store.base import JobStore, ReportChange
from florist_grpc.store.mongo import MongoStore
from tests.store.contract_changes import Reopen
from tests.store.test_mongo_batch import CLIENTS, mongo_store, sequences, started
from tests.store.test_store_contract import T0, JobStoreContract, new_job, report_of

# --- equivalence with the per-change path --------------------------------------------------------------------

_values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b.c", "$d"]), st.none())
_reports = st.dictionaries(
    st.sampled_from(["loss", "acc", "fit.end", "$x", "rounds"]),
    st.one_of(_values, st.dictionaries(st.sampled_from(["1", "2", "m.n"]), _values, max_size=3)),
    max_size=4,
)
_steps = st.lists(
    st.tuples(st.sampled_from(["a", "b", "idle"]), st.integers(0, len(CLIENTS)), _reports), min_size=1, max_size=12
)


def _without_nulls(report: JsonObject) -> JsonObject:
    """Reports as FL processes send them: JSON objects whose values are never null."""
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in report.items() if v is not None}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(_steps, min_size=1, max_size=3))
def test_a_batch_appends_exactly_what_the_per_change_path_appends(
    batches: list[list[tuple[str, int, JsonObject]]],
) -> None:
    stores = {True: mongo_store(batch_ingest=True), False: mongo_store(batch_ingest=False)}
    results: dict[bool, list[Any]] = {True: [], False: []}
    for batched, each in stores.items():
        started(each, "a", "b")
        each.create_job(new_job("idle"))
        previous: dict[tuple[str, int], JsonObject] = {}
        for batch in batches:
            changes = []
            for job, index, report in batch:
                source = SERVER_SOURCE if index == len(CLIENTS) else CLIENTS[index]
                before = previous.get((job, index), {})
                changes.append(ReportChange(job, source, before, _without_nulls(report), T0))
                previous[(job, index)] = _without_nulls(report)
            results[batched] += each.append_report_changes(changes)
    assert results[True] == results[False]
    for job in ("a", "b", "idle"):
        assert stores[True].read_events(job, 0) == stores[False].read_events(job, 0)
        assert stores[True].get_job(job) == stores[False].get_job(job)
    for each in stores.values():
        each.close()


def test_a_stored_event_keeps_the_update_a_roll_forward_applies() -> None:
    store = mongo_store()
    started(store, "a")
    store.append_report_changes([ReportChange("a", SERVER_SOURCE, {}, {"fit.end": 1}, T0)])
    row = store._events.find_one({"job_id": "a", "sequence": 2})
    assert row is not None and json.loads(row["update"]) == {"$set": {"reports.server": {"fit%2Eend": 1}}}


@pytest.mark.parametrize("batch_ingest", [True, False])
def test_a_metric_name_with_a_nul_byte_round_trips_and_holds_up_nothing(batch_ingest: bool) -> None:
    store = mongo_store(batch_ingest)
    started(store, "a")
    report = {"val\x00loss": {"a.b\x00$": 1}}
    events = store.append_report_changes(
        [ReportChange("a", SERVER_SOURCE, {}, report, T0), ReportChange("a", CLIENTS[0], {}, {"ok": 1}, T0)]
    )
    assert sequences(events) == [("a", 2), ("a", 3)]
    changed = {"val\x00loss": {"a.b\x00$": 2, "c\x00": 3}}
    assert store.append_report_changes([ReportChange("a", SERVER_SOURCE, report, changed, T0)])[0] is not None
    assert report_of(store, "a", SERVER_SOURCE) == changed and report_of(store, "a", CLIENTS[0]) == {"ok": 1}


class TestMongoStorePerChangeOnMongomock(JobStoreContract):
    """The per-change path (what a batch falls back to) keeps the whole contract too."""

    @pytest.fixture
    def store(self) -> Iterator[JobStore]:
        store = mongo_store(batch_ingest=False)
        yield store
        store.close()

    @pytest.fixture
    def small_store(self) -> JobStore:
        return MongoStore(mongomock.MongoClient(), "florist_small", batch_ingest=False, keep_changes=5)

    @pytest.fixture
    def reopen(self) -> Reopen:
        def again(store: JobStore) -> JobStore:
            assert isinstance(store, MongoStore)
            return MongoStore(store._client, store.database, batch_ingest=False)

        return again
