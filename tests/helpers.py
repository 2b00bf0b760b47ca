"""Shared test helpers: an in-process control plane, condition waits, job bodies, process checks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Settings, Timeouts
from florist_grpc.domain.model import JobState
from florist_grpc.launch.process import terminate
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.testing.plane import ControlPlaneThread

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, message: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)


class PlaneThread(ControlPlaneThread):
    """The embedded control plane plus a gRPC channel and the conveniences tests use."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        timeouts = settings.pop("timeouts", Timeouts(process_stop_grace_seconds=3.0, client_exit_grace_seconds=10.0))
        port = settings.pop("port", 0)
        super().__init__(Settings(port=port, data_dir=data_dir, timeouts=timeouts, **settings))
        self.channel = grpc.insecure_channel(self.address)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.training = training_grpc.TrainingServiceStub(self.channel)

    def stop(self, grace: float = 1.0) -> None:
        self.channel.close()
        store = self.plane.store
        leftovers = [
            ref
            for job in store.jobs_in_state(JobState.IN_PROGRESS)
            for ref in [job.server_process, *(c.process for c in job.clients)]
            if ref.pid
        ]
        super().stop(grace)
        # The service leaves running FL processes and its Redis up for a restart to adopt; a test plane's
        # temporary data dir will never be restarted, so end them here.
        terminate(leftovers, grace=2.0)
        redis_state = self.settings.data_dir / "redis" / "redis.json"
        if redis_state.exists():
            with contextlib.suppress(psutil.Error, ValueError, KeyError):
                psutil.Process(json.loads(redis_state.read_text())["pid"]).kill()

    # --- conveniences ---

    def create(self, job: job_pb2.Job, request_id: str = "") -> job_pb2.Job:
        return self.jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job, request_id=request_id), timeout=30).job

    def get(self, job_id: str) -> job_pb2.Job:
        return self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=30).job

    def start(self, job_id: str) -> training_pb.StartTrainingResponse:
        return self.training.StartTraining(training_pb.StartTrainingRequest(job_id=job_id), timeout=60)

    def events(self, job_id: str, after: int = 0, timeout: float = 120) -> list[training_pb.MetricsEvent]:
        request = training_pb.StreamMetricsRequest(job_id=job_id, after_sequence=after)
        return [r.event for r in self.training.StreamMetrics(request, timeout=timeout)]

    def wait_state(self, job_id: str, states: set[int], timeout: float = 60) -> job_pb2.Job:
        return wait_for(lambda: (j := self.get(job_id)).state in states and j, timeout, f"job {job_id} in {states}")


TERMINAL = {
    job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,
    job_pb2.JOB_STATE_FINISHED_WITH_ERROR,
    job_pb2.JOB_STATE_CANCELLED,
}


def job_message(data_paths: list[str], rounds: int = 3, strategy: str = "FEDAVG", **config: Any) -> job_pb2.Job:
    client_type = "FEDPROX" if strategy == "FEDPROX" else "FEDAVG"
    server_config = {"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1, **config}
    return job_pb2.Job(
        model="MLP",
        strategy=strategy,
        optimizer="SGD",
        client_type=client_type,
        server_config=dict_to_struct(server_config),
        clients=[job_pb2.ClientInfo(data_path=p) for p in data_paths],
    )


def fl_processes() -> list[psutil.Process]:
    """Live FL server/client processes descended from this test run (directly or through a control plane)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if ("florist_grpc.fl.server" in cmd or "florist_grpc.fl.client" in cmd) and p.status() != "zombie":
                out.append(p)
        except psutil.Error:
            continue
    return out


def no_fl_process_left(timeout: float = 15.0) -> None:
    wait_for(lambda: not fl_processes(), timeout, "every FL process to be gone")


def short_timeouts(**kwargs: float) -> Timeouts:
    return replace(Timeouts(process_stop_grace_seconds=3.0, client_exit_grace_seconds=10.0), **kwargs)
