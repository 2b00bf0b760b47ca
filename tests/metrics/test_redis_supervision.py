"""The embedded Redis is supervised: killed, it comes back on its port with its data, and nothing is lost.

While it is down, health is NOT_SERVING and StartTraining answers UNAVAILABLE at once. The test keeps it down as
long as it needs by listening on its port itself (a listener that never answers: no restart can bind the port).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import psutil
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, wait_for
from tests.metrics.test_pipeline import rebuild

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(plane: ControlPlaneThread, service: str = "") -> int:
    return (
        health_pb2_grpc.HealthStub(plane.channel)
        .Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        .status
    )


def redis_state(plane: ControlPlaneThread) -> dict[str, int]:
    state: dict[str, int] = json.loads((plane.settings.data_dir / "redis" / "redis.json").read_text())
    return state


@contextmanager
def redis_down(plane: ControlPlaneThread) -> Iterator[None]:
    """kill -9 the embedded Redis and keep it down (its port held) until the block ends."""
    for _ in range(20):  # the supervisor may restart it before we hold the port: kill it again
        state = redis_state(plane)
        process = psutil.Process(state["pid"])
        process.kill()
        process.wait(10)
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its connections linger in TIME_WAIT
        try:
            holder.bind(("127.0.0.1", state["port"]))
            holder.listen(1)
        except OSError:
            holder.close()
            wait_for(lambda s=state: redis_state(plane)["pid"] != s["pid"], 15, "the restarted Redis")
            continue
        try:
            yield
        finally:
            holder.close()
        return
    raise AssertionError("could not hold the Redis port")


def test_a_killed_redis_comes_back_with_every_report_and_start_is_unavailable_meanwhile(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    simulation.play_rounds(job, 1)
    port = redis_state(plane)["port"]
    waiting = plane.create(job_message(demo_data))
    late = threading.Thread(target=lambda: job.server.report_round(2, reported="during the outage"))
    with redis_down(plane):
        wait_for(lambda: health(plane) == NOT_SERVING, 15, "NOT_SERVING")
        assert health(plane, "florist.v1.TrainingService") == NOT_SERVING
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            plane.start(waiting.id)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began < 5  # at once, not after the readiness timeout
        assert plane.get(waiting.id).state == job_pb2.JOB_STATE_NOT_STARTED  # and it can be started later
        late.start()  # an FL process reporting while Redis is down: its retries outlast the outage
    wait_for(lambda: health(plane) == SERVING, 20, "SERVING again")
    assert redis_state(plane)["port"] == port  # on its port: the FL processes know that address
    late.join(30)
    assert not late.is_alive()

    def reported_in_round_2() -> object:
        # The stored report may not have its rounds yet (the follower re-reads after the outage): a Struct's
        # missing key is no answer, so read it as a dict.
        rounds = json_format.MessageToDict(plane.get(job.job_id).server_metrics).get("rounds", {})
        return rounds.get("2", {}).get("reported")

    wait_for(lambda: reported_in_round_2() == "during the outage", 20, "the report made during the outage")
    simulation.finish(plane.plane, job, JobState.FINISHED_SUCCESSFULLY)
    events = plane.events(job.job_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    rebuilt = rebuild(events)
    for key, reporter in job.reporters.items():
        assert rebuilt[key] == reporter.report  # nothing lost, nothing duplicated
    assert json_format.MessageToDict(plane.get(job.job_id).server_metrics) == job.server.report
