"""Job overhead: a 2-client, 3-round job through the control plane (StartTraining to terminal event) against the
same Flower processes started by a plain script with no control plane."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import grpc

from bench.harness import embedded_plane
from bench.stats import record
from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Timeouts
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.run_config import ClientRun, ServerRun
from florist_grpc.launch.process import spawn
from florist_grpc.metrics.embedded_redis import EmbeddedRedis, free_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc

GOAL_RATIO = 1.15
CONFIG = {"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1}


def plain_script(data: list[Path], scratch: Path) -> float:
    """What a user would do without a control plane: start the server and the clients, wait for them."""
    redis = EmbeddedRedis(scratch / "plain", Timeouts())
    redis_address = redis.start().removeprefix("redis://").split("/")[0]
    address = f"127.0.0.1:{free_port()}"
    began = time.perf_counter()
    server, _ = spawn(
        "florist_grpc.fl.server",
        [ServerRun(address, redis_address, uuid.uuid4().hex, "MLP", "FEDAVG", len(data), CONFIG).to_json()],
        scratch / "plain-server.log",
    )
    clients = [
        spawn(
            "florist_grpc.fl.client",
            [ClientRun(address, redis_address, uuid.uuid4().hex, "MLP", "SGD", "FEDAVG", str(p), CONFIG).to_json()],
            scratch / f"plain-client{i}.log",
        )[0]
        for i, p in enumerate(data)
    ]
    codes = [server.wait(300), *(c.wait(300) for c in clients)]
    elapsed = time.perf_counter() - began
    redis.stop()
    assert codes == [0] * len(codes), codes
    return elapsed


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
