"""Job overhead: a 2-client, 3-round job through the control plane (StartTraining to terminal event) against the
same Flower processes started by a plain script with no control plane."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.stats import record
from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Timeouts
from florist_grpc.domain.training import training_config
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.probe import probe
from florist_grpc.fl.run_config import ClientRun, ServerRun, run_environment
from florist_grpc.launch.process import spawn
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.testing.plane import embedded_plane

GOAL_RATIO = 1.15
# client_wait_seconds: how long an FL server waits for its clients before failing the run (60 s by default). Many
# FL processes spawned at once on 2 cores need longer than that to connect; it bounds failure, not speed.
CONFIG = {"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1, "client_wait_seconds": 600}


def plain_job(data: list[Path], scratch: Path, config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """What a user would do without a control plane: a Redis, then the FL server and the clients spawned by hand,
    waited for. Returns (seconds from the first spawn to the last exit, the FL server's report).

    The processes do the same work as under the control plane: the same run documents (model sized by the data,
    a Redis user per run, the global model saved every round); only the launching and following differ.
    """
    directory = scratch / f"plain-{uuid.uuid4().hex[:8]}"
    redis_server = EmbeddedRedis(directory, Timeouts())
    redis_url = redis_server.start()
    redis_address = f"127.0.0.1:{redis_server.port}"
    summary = probe(str(data[0]))  # the user knows their data's shape
    shape = {"input_shape": summary["input_shape"], "num_classes": summary["label_max"] + 1}
    address = f"127.0.0.1:{free_service_port()}"
    server_uuid, client_uuids = uuid.uuid4().hex, [uuid.uuid4().hex for _ in data]
    users = RunUsers(redis_url, Timeouts().report_key_ttl_seconds, redis_server.admin_url)
    credentials = users.create([server_uuid, *client_uuids])
    training = training_config("FEDAVG", config)
    server_run = ServerRun(
        address,
        redis_address,
        server_uuid,
        "MLP",
        "FEDAVG",
        len(data),
        training,
        **shape,
        model_dir=str(directory / "models"),
        redis_username=credentials[server_uuid].username,
        redis_password=credentials[server_uuid].password,
    )
    client_runs = [
        ClientRun(
            address,
            redis_address,
            client_uuid,
            "MLP",
            "SGD",
            "FEDAVG",
            str(path),
            training,
            **shape,
            redis_username=credentials[client_uuid].username,
            redis_password=credentials[client_uuid].password,
        )
        for client_uuid, path in zip(client_uuids, data, strict=True)
    ]
    began = time.perf_counter()
    server, _ = spawn("florist_grpc.fl.server", [], directory / "server.log", run_environment(server_run.to_json()))
    clients = [
        spawn("florist_grpc.fl.client", [], directory / f"client{i}.log", run_environment(run.to_json()))[0]
        for i, run in enumerate(client_runs)
    ]
    codes = [server.wait(900), *(c.wait(900) for c in clients)]
    elapsed = time.perf_counter() - began
    report = json.loads(redis.Redis.from_url(redis_url).get(server_uuid) or b"{}")
    users.close()
    redis_server.stop()
    assert codes == [0] * len(codes), (codes, directory)
    return elapsed, report


def plain_script(data: list[Path], scratch: Path) -> float:
    return plain_job(data, scratch, CONFIG)[0]


def through_control_plane(data: list[Path]) -> float:
    with embedded_plane() as running, grpc.insecure_channel(running.address) as channel:
        job = job_pb2.Job(
            model="MLP",
            strategy="FEDAVG",
            optimizer="SGD",
            client_type="FEDAVG",
            server_config=dict_to_struct(CONFIG),
            clients=[job_pb2.ClientInfo(data_path=str(p)) for p in data],
        )
        created = (
            job_service_pb2_grpc.JobServiceStub(channel)
            .CreateJob(job_service_pb2.CreateJobRequest(job=job), timeout=30)
            .job
        )
        training = pb_grpc.TrainingServiceStub(channel)
        stream = training.StreamMetrics(pb.StreamMetricsRequest(job_id=created.id), timeout=300)
        stream.initial_metadata()
        began = time.perf_counter()
        training.StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=120)
        last = [r.event for r in stream][-1]
        elapsed = time.perf_counter() - began
        assert last.job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, last
        return elapsed


def run(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        data = write_synthetic(scratch / "data", 2)
        for attempt in range(1 if quick else 2):
            plain = plain_script(data, scratch)
            ours = through_control_plane(data)
            record("overhead", attempt=attempt, plain_s=plain, control_plane_s=ours, ratio=ours / plain)
