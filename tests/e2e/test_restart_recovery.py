"""The control plane SIGKILLed mid-training: FL processes and the embedded Redis survive, and a restart on the
same data dir re-attaches the job, reconciles what was reported while it was down, and finishes it."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf import json_format

from florist_grpc.domain.merge_patch import apply
from florist_grpc.domain.model import ProcessRef
from florist_grpc.launch.process import find
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.store.sqlite import SqliteStore
from tests.e2e.conftest import Served, serve, stop
from tests.helpers import job_message, wait_for


def refs_of(data_dir: Path, job_id: str) -> dict[str, ProcessRef]:
    """The job's FL processes as the control plane recorded them: (pid, create_time), read from its store."""
    store = SqliteStore(data_dir / "florist.sqlite3")
    try:
        job = store.get_job(job_id)
    finally:
        store.close()
    assert job is not None
    return {"server": job.server_process, **{f"client{i}": c.process for i, c in enumerate(job.clients)}}


def processes_of(data_dir: Path, job: job_pb2.Job) -> list[psutil.Process]:
    """The job's live FL processes (no longer our children, spawned or forked from the launcher pool)."""
    return [p for ref in refs_of(data_dir, job.id).values() if (p := find(ref)) is not None]


class Client:
    def __init__(self, served: Served) -> None:
        self.channel = grpc.insecure_channel(served.address)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.training = training_grpc.TrainingServiceStub(self.channel)

    def get(self, job_id: str) -> job_pb2.Job:
        return self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10).job

    def reached_round(self, job_id: str, n: int) -> bool:
        metrics = self.get(job_id).server_metrics
        return "rounds" in metrics and str(n) in metrics["rounds"]

    def events(self, job_id: str) -> list[pb.MetricsEvent]:
        request = pb.StreamMetricsRequest(job_id=job_id)
        return [r.event for r in self.training.StreamMetrics(request, timeout=180)]


@pytest.fixture
def cleanup() -> Iterator[list[psutil.Process]]:
    leftovers: list[psutil.Process] = []
    yield leftovers
    for p in leftovers:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)


def start_and_crash(data_dir: Path, demo_data: list[str], rounds: int) -> tuple[job_pb2.Job, int]:
    served = serve(data_dir)
    client = Client(served)
    job = client.jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(demo_data, rounds=rounds))).job
    client.training.StartTraining(pb.StartTrainingRequest(job_id=job.id), timeout=60)
    wait_for(
        lambda: (
            "2" in client.get(job.id).server_metrics["rounds"]
            if "rounds" in client.get(job.id).server_metrics
            else False
        ),
        60,
        "round 2",
    )
    running = client.get(job.id)
    client.channel.close()
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(10)
    return running, served.process.pid


def test_a_job_survives_a_sigkill_of_the_control_plane_and_finishes_after_restart(
    tmp_path: Path, demo_data: list[str], cleanup: list[psutil.Process]
) -> None:
    data_dir = tmp_path / "florist"
    job, _ = start_and_crash(data_dir, demo_data, rounds=120)
    survivors = processes_of(data_dir, job)
    cleanup.extend(survivors)
    assert survivors, "FL processes must outlive a crash of the control plane"
    again = serve(data_dir)
    try:
        client = Client(again)
        events = client.events(job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # no gap across the restart
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        done = client.get(job.id)
        assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        rounds = done.server_metrics["rounds"]
        assert sorted(int(n) for n in rounds) == list(range(1, 121))  # rounds reported while down included
        rebuilt: dict[str, object] = {}
        for event in events:
            if event.source.kind == pb.SOURCE_KIND_SERVER:
                rebuilt = apply(rebuilt, json_format.MessageToDict(event.patch))
        assert rebuilt == json_format.MessageToDict(done.server_metrics)
        wait_for(lambda: not processes_of(data_dir, job), 20, "the job's processes to exit")
    finally:
        assert stop(again) == 0


def test_a_job_whose_fl_server_died_while_the_control_plane_was_down_fails_clearly(
    tmp_path: Path, demo_data: list[str], cleanup: list[psutil.Process]
) -> None:
    data_dir = tmp_path / "florist"
    job, _ = start_and_crash(data_dir, demo_data, rounds=1000)
    cleanup.extend(processes_of(data_dir, job))
    server = find(refs_of(data_dir, job.id)["server"])
    assert server is not None
    server.kill()
    server.wait(10)
    again = serve(data_dir)
    try:
        client = Client(again)
        events = client.events(job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        failed = client.get(job.id)
        assert failed.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
        assert "FL server" in failed.error_message and "fit_end" in failed.error_message
        wait_for(lambda: not processes_of(data_dir, job), 20, "the clients to be stopped")
    finally:
        assert stop(again) == 0
