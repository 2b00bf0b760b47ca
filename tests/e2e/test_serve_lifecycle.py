"""`florist-grpc serve`: flags, refusal to expose an unauthenticated service, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import psutil

from florist_grpc.proto.florist.v1 import job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from tests.e2e.conftest import BIN, serve, stop
from tests.helpers import job_message, wait_for


def test_sigterm_ends_streams_and_exits_zero_within_the_grace_period(tmp_path: Path) -> None:
    served = serve(tmp_path / "florist")
    redis_pid = int(json.loads((tmp_path / "florist/redis/redis.json").read_text())["pid"])
    with grpc.insecure_channel(served.address) as channel:
        job = (
            job_service_pb2_grpc.JobServiceStub(channel)
            .CreateJob(job_service_pb2.CreateJobRequest(job=job_message(["/d"])), timeout=10)
            .job
        )
        # A stream that would follow forever (the job never starts) must be ended by the shutdown.
        stream = training_grpc.TrainingServiceStub(channel).StreamMetrics(
            training_pb.StreamMetricsRequest(job_id=job.id), timeout=60
        )
        wait_for(stream.is_active, 5, "the stream to be open")
        began = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(30)
        elapsed = time.monotonic() - began
        assert code == 0
        assert elapsed < 15
        try:
            list(stream)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    # No job was running, so the embedded Redis went down with the service.
    wait_for(lambda: not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == "zombie", 10, "redis")


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    served = serve(tmp_path / "florist")
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 0


def test_data_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    served = serve(tmp_path / "florist")
    with grpc.insecure_channel(served.address) as channel:
        job = (
            job_service_pb2_grpc.JobServiceStub(channel)
            .CreateJob(job_service_pb2.CreateJobRequest(job=job_message(["/d"])), timeout=10)
            .job
        )
    assert stop(served) == 0
    again = serve(tmp_path / "florist")
    with grpc.insecure_channel(again.address) as channel:
        got = job_service_pb2_grpc.JobServiceStub(channel).GetJob(job_service_pb2.GetJobRequest(job_id=job.id))
    assert got.job == job
    assert stop(again) == 0


def test_serving_on_a_public_address_without_auth_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "florist-grpc"), "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--auth-file" in result.stderr and "--insecure-no-auth" in result.stderr


def test_flags_can_come_from_florist_environment_variables(tmp_path: Path) -> None:
    served = serve(tmp_path / "ignored", env={"FLORIST_DATA_DIR": str(tmp_path / "from-env")})
    # An explicit flag wins over the environment; the env var is the flag's default.
    assert (tmp_path / "ignored").exists()
    assert stop(served) == 0
    process = subprocess.Popen(
        [str(BIN / "florist-grpc"), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FLORIST_DATA_DIR": str(tmp_path / "from-env")},
    )
    assert process.stdout is not None
    assert "listening on" in process.stdout.readline()
    assert (tmp_path / "from-env" / "florist.sqlite3").exists()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
