"""A real job survives a kill -9 of the embedded Redis: it is restarted with the runs' users and every report."""

from __future__ import annotations

import json

import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, no_fl_process_left, wait_for

ROUNDS = 12


def server_round(plane: ControlPlaneThread, job_id: str, n: int) -> bool:
    metrics = plane.get(job_id).server_metrics
    return "rounds" in metrics and str(n) in metrics["rounds"]


def serving(plane: ControlPlaneThread) -> bool:
    stub = health_pb2_grpc.HealthStub(plane.channel)
    return bool(
        stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    )


def test_a_job_finishes_with_every_round_after_redis_was_killed_mid_training(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=ROUNDS))
    plane.start(job.id)
    wait_for(lambda: server_round(plane, job.id, 2), 120, "round 2")
    state = json.loads((plane.settings.data_dir / "redis" / "redis.json").read_text())
    psutil.Process(state["pid"]).kill()  # the FL processes retry their reports while the supervisor restarts it
    wait_for(
        lambda: json.loads((plane.settings.data_dir / "redis" / "redis.json").read_text())["pid"] != state["pid"],
        30,
        "a new Redis",
    )
    wait_for(lambda: serving(plane), 30, "SERVING again")
    done = plane.wait_state(
        job.id,
        {job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, job_pb2.JOB_STATE_FINISHED_WITH_ERROR, job_pb2.JOB_STATE_CANCELLED},
        300,
    )
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    assert sorted(int(n) for n in done.server_metrics["rounds"]) == list(range(1, ROUNDS + 1))
    for client in done.clients:
        assert sorted(int(n) for n in client.metrics["rounds"]) == list(range(1, ROUNDS + 1))
    events = plane.events(job.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    no_fl_process_left()
