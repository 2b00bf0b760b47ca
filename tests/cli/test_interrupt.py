"""Ctrl-C in `train watch` and `run` stops the command, not the job, and says how to get back to it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import json_format

from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, play_rounds
from tests.helpers import job_message, no_fl_process_left, wait_for

CLI = [sys.executable, "-m", "florist_grpc"]


def interrupt_once_watching(
    plane: ControlPlaneThread, args: list[str], job_id: Callable[[], str]
) -> subprocess.CompletedProcess[str]:
    """Run the command, press Ctrl-C once it follows the job's events, and let it finish."""
    command = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watched = wait_for(job_id, 60, "the job")
        wait_for(lambda: plane.plane.hub.subscriber_count(watched) == 1, 60, "the command to follow the job")
        command.send_signal(signal.SIGINT)
        stdout, stderr = command.communicate(timeout=30)
    finally:
        command.kill()
        command.wait()
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def said_on_interrupt(job_id: str, address: str) -> str:
    return (
        f"stopped watching job {job_id}; the job goes on. Watch it again: florist-grpc train watch {job_id}"
        f" --address {address} (stop it: florist-grpc train stop {job_id} --address {address})"
    )


def test_ctrl_c_in_watch_says_the_job_goes_on_and_how_to_watch_it_again(plane: ControlPlaneThread) -> None:
    simulated = create_running(plane.plane, 2)
    play_rounds(simulated, 1)
    job_id = simulated.job_id
    done = interrupt_once_watching(plane, ["train", "watch", job_id, "--address", plane.address], lambda: job_id)
    assert done.returncode == 130
    assert done.stderr.splitlines() == [said_on_interrupt(job_id, plane.address)]
    assert plane.get(job_id).state == job_pb2.JOB_STATE_IN_PROGRESS


@pytest.mark.slow
def test_ctrl_c_in_run_leaves_the_started_job_training_and_says_so(
    plane: ControlPlaneThread, demo_data: list[str], tmp_path: Path
) -> None:
    job_file = tmp_path / "job.json"
    body = json_format.MessageToDict(job_message(demo_data, rounds=500), preserving_proto_field_name=True)
    job_file.write_text(json.dumps(body))

    def created() -> str:
        jobs = plane.jobs.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10).jobs
        return jobs[0].id if jobs else ""

    done = interrupt_once_watching(plane, ["run", "--file", str(job_file), "--address", plane.address], created)
    job_id = created()
    try:
        assert done.returncode == 130
        assert f"created job {job_id}" in done.stdout
        assert done.stderr.splitlines() == [said_on_interrupt(job_id, plane.address)]
        assert plane.get(job_id).state == job_pb2.JOB_STATE_IN_PROGRESS
    finally:
        plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job_id), timeout=60)
        no_fl_process_left()
