"""A report value BSON cannot hold (an integer beyond 64 bits: valid JSON, and ingest keeps integers up to a
double's range) must be set aside before its event is written: MongoStore stores the event's update as text, so
the event itself inserts fine, and only advancing the job document fails -- after which every later append and
every read of the job would roll that event forward and fail again."""

from __future__ import annotations

import pytest

from florist_grpc.domain.model import SERVER_SOURCE
from florist_grpc.store.base import ReportChange, SetAside
from tests.store.test_mongo_batch import CLIENTS, mongo_store, sequences, started
from tests.store.test_store_contract import T0, report_of

TOO_BIG = 2**64  # e.g. an unsigned 64-bit seed or counter


@pytest.mark.parametrize("batch_ingest", [True, False])
def test_an_integer_bson_cannot_hold_is_set_aside_alone_and_the_job_goes_on(batch_ingest: bool) -> None:
    store = mongo_store(batch_ingest)
    started(store, "a", "b")
    results = store.append_report_changes(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("a", CLIENTS[0], {}, {"seed": TOO_BIG}, T0),
            ReportChange("b", SERVER_SOURCE, {}, {"y": 1}, T0),
            ReportChange("a", CLIENTS[1], {}, {"seed": 1, "n": {"deep": -TOO_BIG}}, T0),
            ReportChange("a", CLIENTS[2], {}, {"w": 1}, T0),
        ]
    )
    assert sequences(results) == [("a", 2), "set aside", ("b", 2), "set aside", ("a", 3)]
    assert isinstance(results[1], SetAside) and "8-byte" in results[1].reason
    # Nothing of the refused changes was written, and the job is not held up: reads and appends go on.
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3]
    assert report_of(store, "a", CLIENTS[0]) == {} and report_of(store, "a", CLIENTS[2]) == {"w": 1}
    later = store.append_report_changes([ReportChange("a", CLIENTS[0], {}, {"seed": 7}, T0)])
    assert sequences(later) == [("a", 4)] and report_of(store, "a", CLIENTS[0]) == {"seed": 7}
