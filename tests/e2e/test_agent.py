"""`florist-grpc agent`: FL clients launched on the data holder's machine, authenticated by a shared token."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from florist_grpc.proto.florist.v1 import client_agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import client_agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from tests.e2e.conftest import BIN, serve, stop
from tests.helpers import job_message

TOKEN = "agent-shared-secret"


@dataclass
class Agent:
    process: subprocess.Popen[str]
    address: str
    data_root: Path


@pytest.fixture
def agent(tmp_path: Path, demo_data: list[str]) -> Iterator[Agent]:
    root = tmp_path / "agent-data"
    root.mkdir()
    shutil.copy(demo_data[0], root / "mine.pt")
    process = subprocess.Popen(
        [str(BIN / "florist-grpc"), "agent", "--port", "0", "--data-root", str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "FLORIST_AGENT_TOKEN": TOKEN},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "florist-grpc agent listening on" in line, line
    yield Agent(process, line.strip().rsplit(" ", 1)[-1], root)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_a_job_with_an_agent_run_client_trains_to_success(tmp_path: Path, demo_data: list[str], agent: Agent) -> None:
    served = serve(tmp_path / "florist", env={"FLORIST_AGENT_TOKEN": TOKEN})
    try:
        with grpc.insecure_channel(served.address) as channel:
            message = job_message(["mine.pt", demo_data[1]], rounds=2)
            message.clients[0].service_address = agent.address
            job = (
                job_service_pb2_grpc.JobServiceStub(channel)
                .CreateJob(job_service_pb2.CreateJobRequest(job=message), timeout=10)
                .job
            )
            training = training_grpc.TrainingServiceStub(channel)
            training.StartTraining(pb.StartTrainingRequest(job_id=job.id), timeout=60)
            events = [r.event for r in training.StreamMetrics(pb.StreamMetricsRequest(job_id=job.id), timeout=120)]
            assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
            done = job_service_pb2_grpc.JobServiceStub(channel).GetJob(job_service_pb2.GetJobRequest(job_id=job.id))
            remote = done.job.clients[0]
            assert remote.state == job_pb2.CLIENT_STATE_FINISHED and "shutdown" in remote.metrics
            log = training.StreamLogs(pb.StreamLogsRequest(job_id=job.id, source=pb.LogSource(client_index=0)))
            assert "".join(chunk.text for chunk in log)  # proxied from the agent
    finally:
        assert stop(served) == 0


def test_the_agent_refuses_callers_without_the_token_and_paths_outside_its_root(agent: Agent) -> None:
    with grpc.insecure_channel(agent.address) as channel:
        stub = agent_grpc.ClientAgentServiceStub(channel)
        request = agent_pb.StartClientRequest(
            client_uuid="abc",
            server_address="127.0.0.1:1",
            redis_address="127.0.0.1:1",
            data_path="../../etc/passwd",
            model="MLP",
            optimizer="SGD",
            client_type="FEDAVG",
        )
        with pytest.raises(grpc.RpcError) as raised:
            stub.StartClient(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.StartClient(request, timeout=10, metadata=(("authorization", "Bearer wrong"),))
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.StartClient(request, timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_agent_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLORIST_AGENT_TOKEN"}
    result = subprocess.run(
        [str(BIN / "florist-grpc"), "agent", "--port", "0", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2 and "FLORIST_AGENT_TOKEN" in result.stderr


def test_an_unreachable_agent_fails_the_start_with_unavailable(tmp_path: Path, demo_data: list[str]) -> None:
    from florist_grpc.net import free_port

    served = serve(tmp_path / "florist", env={"FLORIST_AGENT_TOKEN": TOKEN})
    try:
        with grpc.insecure_channel(served.address) as channel:
            message = job_message(["mine.pt"], rounds=1)
            # A model of fixed sizes: nothing to read from the (agent-run) client's data before launch.
            message.model = "MNIST_CNN"
            message.clients[0].service_address = f"127.0.0.1:{free_port()}"
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            job = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=message), timeout=10).job
            with pytest.raises(grpc.RpcError) as raised:
                training_grpc.TrainingServiceStub(channel).StartTraining(
                    pb.StartTrainingRequest(job_id=job.id), timeout=60
                )
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            failed = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id)).job
            assert failed.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR and "unreachable" in failed.error_message
    finally:
        assert stop(served) == 0
