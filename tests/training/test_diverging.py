"""Diverging runs. A round whose aggregated val loss is NaN or infinite stops the run there and fails the job,
saying so (unless `server_config.stop_on_divergence` is false); non-finite values are stored as strings either
way, and a run whose training losses blow up while the aggregated val loss stays finite is no divergence."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from google.protobuf import json_format

from florist_grpc.config import Timeouts
from florist_grpc.domain.training import training_config
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.probe import probe
from florist_grpc.fl.run_config import ClientRun, ServerRun, run_environment
from florist_grpc.fl.server import EXIT_DIVERGED
from florist_grpc.launch.process import spawn
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message, no_fl_process_left

NON_FINITE = {"NaN", "Infinity", "-Infinity"}
AGGREGATED_LOSS = "val - loss - aggregated"
# SGD at the catalog's largest learning rate with heavy momentum, two local epochs on the default synthetic set
# (600 samples per client): every weight is NaN before round 1's evaluation (seeded, so on every run).
NAN_AT_ROUND_1 = {"learning_rate": 10.0, "momentum": 0.99, "local_epochs": 2}


def non_finite_values(value: Any) -> list[str]:
    """Every value that says a number diverged (stored as strings; a float NaN would not have been stored)."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in non_finite_values(item)]
    if isinstance(value, list):
        return [v for item in value for v in non_finite_values(item)]
    assert not (isinstance(value, float) and not math.isfinite(value))
    return [value] if value in NON_FINITE else []


def reports(job: job_pb2.Job) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    server = json_format.MessageToDict(job.server_metrics)
    return server, [json_format.MessageToDict(c.metrics) for c in job.clients]


@pytest.mark.slow
def test_a_run_whose_aggregated_loss_is_nan_at_round_1_stops_there_and_fails_saying_so(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    paths = [str(p) for p in write_synthetic(tmp_path, 2)]
    job = plane.create(job_message(paths, rounds=3, **NAN_AT_ROUND_1))
    plane.start(job.id)
    events = plane.events(job.id, timeout=300)
    done = plane.get(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert done.error_message == "diverged: aggregated val loss NaN at round 1"
    server, clients = reports(done)
    # Round 1 only, in FLorist's layout, plus the extra key that says why the run stopped.
    assert list(server["rounds"]) == ["1"]
    assert server["rounds"]["1"][AGGREGATED_LOSS] == "NaN"
    assert server["diverged"] == {"round": 1, "loss": "NaN"}
    assert server["num_rounds"] == 1 and {"fit_end", "shutdown"} <= set(server)
    # The clients were told to disconnect, as after a last round: they finished, they did not fail.
    assert [c.state for c in done.clients] == [job_pb2.CLIENT_STATE_FINISHED] * 2, [
        c.error_message for c in done.clients
    ]
    assert all(list(c["rounds"]) == ["1"] and "shutdown" in c for c in clients)
    no_fl_process_left()


@pytest.mark.slow
def test_with_stop_on_divergence_false_a_diverged_run_goes_through_every_round_and_succeeds(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    paths = [str(p) for p in write_synthetic(tmp_path, 2)]
    job = plane.create(job_message(paths, rounds=3, stop_on_divergence=False, **NAN_AT_ROUND_1))
    plane.start(job.id)
    events = plane.events(job.id, timeout=300)
    done = plane.get(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    server, _ = reports(done)
    assert {n: r[AGGREGATED_LOSS] for n, r in server["rounds"].items()} == {"1": "NaN", "2": "NaN", "3": "NaN"}
    assert "diverged" not in server and server["num_rounds"] == 3
    assert [c.state for c in done.clients] == [job_pb2.CLIENT_STATE_FINISHED] * 2
    no_fl_process_left()


@pytest.mark.slow
def test_the_fl_server_that_stops_a_diverged_run_exits_with_its_own_code_and_its_client_with_0(
    tmp_path: Path,
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", Timeouts())
    redis_url = redis_server.start()
    redis_address = f"127.0.0.1:{redis_server.port}"
    (data,) = write_synthetic(tmp_path / "data", 1)
    summary = probe(str(data))
    shape = {"input_shape": summary["input_shape"], "num_classes": summary["label_max"] + 1}
    config = training_config("FEDAVG", {"n_server_rounds": 3, "batch_size": 32, **NAN_AT_ROUND_1})
    server_uuid, client_uuid = uuid.uuid4().hex, uuid.uuid4().hex
    users = RunUsers(redis_url, 3600, redis_server.admin_url)
    credentials = users.create([server_uuid, client_uuid])
    address = f"127.0.0.1:{free_service_port()}"
    server_run = ServerRun(
        address, redis_address, server_uuid, "MLP", "FEDAVG", 1, config, **shape,
        redis_username=credentials[server_uuid].username, redis_password=credentials[server_uuid].password,
    )  # fmt: skip
    client_run = ClientRun(
        address, redis_address, client_uuid, "MLP", "SGD", "FEDAVG", str(data), config, **shape,
        redis_username=credentials[client_uuid].username, redis_password=credentials[client_uuid].password,
    )  # fmt: skip
    server, _ = spawn("florist_grpc.fl.server", [], tmp_path / "server.log", run_environment(server_run.to_json()))
    client, _ = spawn("florist_grpc.fl.client", [], tmp_path / "client.log", run_environment(client_run.to_json()))
    try:
        assert server.wait(120) == EXIT_DIVERGED, (tmp_path / "server.log").read_text()[-2000:]
        assert client.wait(60) == 0, (tmp_path / "client.log").read_text()[-2000:]
        with redis.Redis.from_url(redis_url) as store:
            report = json.loads(store.get(server_uuid) or b"{}")
        assert report["diverged"] == {"round": 1, "loss": "NaN"}
        assert list(report["rounds"]) == ["1"]
    finally:
        for process in (server, client):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        users.close()
        redis_server.stop()


@pytest.mark.slow
def test_infinite_training_losses_with_a_finite_aggregated_val_loss_are_no_divergence_and_every_round_runs(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    paths = [str(p) for p in write_synthetic(tmp_path, 2, samples_per_client=120)]
    rounds = 4
    # The largest rates the catalog allows: FedAdam moves every weight by ~eta per round and the clients' local
    # steps blow their training losses up to Infinity by round 2, while the aggregated val loss stays finite
    # (6e7 to 2e8 in rounds 1-4, measured with the same model, data and seeds).
    message = job_message(
        paths, rounds=rounds, strategy="FEDADAM", server_learning_rate=1000.0, learning_rate=10.0, local_epochs=6
    )
    job = plane.create(message)
    plane.start(job.id)
    events = plane.events(job.id, timeout=300)
    done = plane.get(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    server, clients = reports(done)
    assert sorted(server["rounds"]) == [str(n) for n in range(1, rounds + 1)]
    for n in range(1, rounds + 1):
        assert {"fit_round_end", "eval_round_end"} <= set(server["rounds"][str(n)]), n
        assert math.isfinite(server["rounds"][str(n)][AGGREGATED_LOSS]), n
    assert "fit_end" in server and "diverged" not in server
    diverged = non_finite_values(server) + [v for c in clients for v in non_finite_values(c)]
    assert diverged, "the training losses were expected to diverge"
    no_fl_process_left()
