"""A diverging run reports NaN and Infinity; a report or change that cannot be stored is set aside alone
(real Redis, real SQLite, real follower and gRPC)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from google.protobuf import json_format

from florist_grpc.domain.model import SERVER_SOURCE, JobState, MetricsEvent, Source, SourceKind
from florist_grpc.metrics.ingest import ReportIngest
from florist_grpc.metrics.report_text import MAX_REPORT_DEPTH
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import reporter_for
from tests.helpers import wait_for
from tests.metrics.test_pipeline import rebuild
from tests.store.test_store_contract import new_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_raw(plane: ControlPlaneThread, uuid: str, report: dict[str, object]) -> None:
    """What a reporter using Python's json.dumps defaults writes (FL4Health's does): bare NaN/Infinity tokens."""
    client = redis.Redis.from_url(plane.plane.redis_url)
    client.set(uuid, json.dumps(report))
    client.publish(uuid, uuid)
    client.close()


def test_nan_and_infinity_tokens_are_stored_and_streamed_as_strings(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    losses = {"backward": float("nan"), "up": float("inf"), "down": float("-inf"), "huge": 10**400}
    write_raw(plane, job.server.uuid, {"host_type": "server", "rounds": {"1": {"fit_round_losses": losses}}})
    job.clients[0].report_values(host_type="client", initialized="t0")  # a healthy source in the same job
    wait_for(lambda: plane.get(job.job_id).server_metrics.fields.get("rounds"), 10, "the NaN report to be stored")
    job.server.report_values(host_type="server", fit_start="t1")  # later reports of the same job still flow
    job.server.report_round(1, fit_round_losses=losses)  # our own reporter: NaN written as a string
    job.server.report_values(fit_end="end")
    simulation.finish(plane.plane, job)
    stored = plane.get(job.job_id)
    assert stored.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    expected = {"backward": "NaN", "up": "Infinity", "down": "-Infinity", "huge": "Infinity"}
    server = json_format.MessageToDict(stored.server_metrics)
    assert server["rounds"]["1"]["fit_round_losses"] == expected and server["fit_end"] == "end"
    rebuilt = rebuild(plane.events(job.job_id))
    assert rebuilt["server"] == server and rebuilt["client0"] == {"host_type": "client", "initialized": "t0"}


def test_our_reporter_writes_non_finite_numbers_as_strings(plane: ControlPlaneThread) -> None:
    run = uuid.uuid4().hex  # a run's key: the only kind the control user may touch
    reporter = reporter_for(plane.plane, run)
    reporter.report_round(1, fit_round_losses={"backward": float("nan"), "up": float("inf")})
    raw = redis.Redis.from_url(plane.plane.redis_url).get(run)
    assert raw is not None

    def strict(token: str) -> object:
        raise AssertionError(f"bare {token} in the report")

    assert json.loads(raw, parse_constant=strict)["rounds"]["1"]["fit_round_losses"] == {
        "backward": "NaN",
        "up": "Infinity",
    }


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_a_report_too_deep_to_stream_is_set_aside_and_the_next_one_is_stored(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    write_raw(plane, job.server.uuid, {"host_type": "server", "deep": nested(MAX_REPORT_DEPTH)})
    write_raw(plane, job.clients[0].uuid, nested(MAX_REPORT_DEPTH))  # the deepest accepted: clients decode it
    wait_for(lambda: plane.get(job.job_id).clients[0].metrics.fields.get("x"), 10, "the client's report")
    assert "deep" not in plane.get(job.job_id).server_metrics.fields
    job.server.report_values(host_type="server", fit_start="t0", fit_end="end")
    simulation.finish(plane.plane, job)
    stored = plane.get(job.job_id)
    assert stored.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    server = json_format.MessageToDict(stored.server_metrics)
    assert server == {"host_type": "server", "fit_start": "t0", "fit_end": "end"}


def test_ingest_sets_aside_a_change_the_store_refuses_and_persists_the_rest_of_the_batch(tmp_path: Path) -> None:
    """The batch retried forever before: a change SQLite refused looked like an outage."""
    store = SqliteStore(tmp_path / "jobs.sqlite")
    store.create_job(new_job("a"))
    store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    published: list[MetricsEvent] = []
    ingest = ReportIngest("redis://127.0.0.1:1/0", store, published.extend)  # Redis is not read here
    client = Source(SourceKind.CLIENT, 0, "u0")
    store.append_report_changes([ReportChange("a", client, {}, {"ok": 1}, T0)])
    # This thread's connection holds no value over 100,000 bytes (SQLite refuses one over its length limit).
    store._connections.connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
    baselines = ingest.persist_many(
        [
            ReportChange("a", SERVER_SOURCE, {}, {"x": 1}, T0),
            ReportChange("a", client, {"ok": 1}, {"ok": "o" * 200_000}, T0),  # SQLite refuses the value
            ReportChange("a", SERVER_SOURCE, {}, {"x": float("nan")}, T0),  # never reaches SQLite
            ReportChange("a", SERVER_SOURCE, {"x": 1}, {"x": 2}, T0),
        ]
    )
    assert baselines == [True, False, False, True]
    assert [e.sequence for e in published] == [3, 4]
    assert [e.sequence for e in store.read_events("a", 0)] == [1, 2, 3, 4]
    job = store.get_job("a")
    assert job is not None and job.server_metrics == {"x": 2}
    ingest.close()
