"""Jobs whose FL processes Slurm runs (`serve --launcher slurm`), on a real one-node cluster (conftest.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from florist_grpc.cli.models import download_model
from florist_grpc.launcher_config import LauncherSettings
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.slurm_cluster import SlurmCluster
from tests.e2e.conftest import serve, stop
from tests.e2e.test_restart_recovery import Client
from tests.helpers import TERMINAL, job_message, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def plane(slurm: SlurmCluster, tmp_path: Path) -> Iterator[ControlPlaneThread]:
    shared = tmp_path / "shared"
    shared.mkdir()
    running = ControlPlaneThread.in_dir(
        tmp_path / "florist",
        launcher=LauncherSettings("slurm", shared_dir=shared),
        advertise_host="127.0.0.1",
        launcher_pool=False,
    )
    yield running
    running.stop()


def slurm_jobs(slurm: SlurmCluster, job_id: str) -> dict[str, str]:
    """The Slurm jobs of an FL job Slurm still knows (queued, running or recently ended): name -> whole record."""
    lines = slurm.run("scontrol", "show", "job", "-o").splitlines()
    return {name: line for line in lines if (name := _field(line, "JobName")).startswith(f"florist-{job_id}-")}


def _field(line: str, key: str) -> str:
    return next((w.split("=", 1)[1] for w in line.split() if w.startswith(f"{key}=")), "")


def reached_round(plane: ControlPlaneThread, job_id: str, n: int) -> bool:
    metrics = plane.get(job_id).server_metrics
    return "rounds" in metrics and str(n) in metrics["rounds"]  # type: ignore[operator]


def test_a_two_client_job_finishes_through_slurm_with_metrics_logs_and_model(
    plane: ControlPlaneThread, slurm: SlurmCluster, demo_data: list[str], tmp_path: Path
) -> None:
    message = job_message(demo_data, rounds=2)
    message.resources.CopyFrom(job_pb2.JobResources(cpus=2, time_limit=Duration(seconds=600)))
    job = plane.create(message)
    plane.start(job.id)
    events = plane.events(job.id, timeout=180)  # streamed while it runs, until its terminal event
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    done = plane.get(job.id)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    assert sorted(done.server_metrics["rounds"].keys()) == ["1", "2"]  # type: ignore[union-attr]
    assert all(c.state == job_pb2.CLIENT_STATE_FINISHED for c in done.clients)
    # One Slurm job per FL process, named after the job and the process, with the job's resources; none left.
    ran = slurm_jobs(slurm, job.id)
    assert sorted(ran) == [f"florist-{job.id}-client0", f"florist-{job.id}-client1", f"florist-{job.id}-server"]
    for line in ran.values():
        assert _field(line, "JobState") == "COMPLETED"
        assert (_field(line, "CPUs/Task"), _field(line, "TimeLimit"), _field(line, "Requeue")) == ("2", "00:10:00", "0")
    assert slurm.squeue() == []
    # Logs (written by the Slurm jobs into the shared dir) read through StreamLogs.
    for source in (pb.LogSource(server=True), pb.LogSource(client_index=1)):
        chunks = plane.training.StreamLogs(pb.StreamLogsRequest(job_id=job.id, source=source), timeout=30)
        assert "".join(c.text for c in chunks).strip()
    assert (tmp_path / "shared" / "jobs" / job.id / "server.log").exists()
    artifact = download_model(plane.channel, (), job.id, 0, tmp_path / "final.safetensors")
    assert artifact.round == 2 and (tmp_path / "final.safetensors").stat().st_size == artifact.size_bytes


def test_scancel_of_a_clients_slurm_job_fails_the_job_naming_that_client_within_5s(
    plane: ControlPlaneThread, slurm: SlurmCluster, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=500))
    plane.start(job.id)
    wait_for(lambda: reached_round(plane, job.id, 1), 120, "round 1")
    client1 = plane.plane.store.get_job(job.id)
    assert client1 is not None
    slurm_id = client1.clients[1].process.slurm_job_id
    assert slurm_id and _field(slurm_jobs(slurm, job.id)[f"florist-{job.id}-client1"], "JobId") == slurm_id
    cancelled_at = time.monotonic()
    slurm.run("scancel", slurm_id)
    ended = plane.wait_state(job.id, set(TERMINAL), timeout=5)
    assert time.monotonic() - cancelled_at < 5
    assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert ended.error_message.startswith("FL client 1 ("), ended.error_message
    assert f"was cancelled in Slurm (Slurm job {slurm_id} CANCELLED" in ended.error_message
    assert ended.clients[1].state == job_pb2.CLIENT_STATE_FAILED
    assert slurm.squeue() == []  # the server and the other client were cancelled, and gone before the end


def test_stop_training_scancels_every_slurm_job_of_the_job(
    plane: ControlPlaneThread, slurm: SlurmCluster, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=500))
    plane.start(job.id)
    wait_for(lambda: reached_round(plane, job.id, 1), 120, "round 1")
    assert len(slurm.squeue()) == 3 * 3  # three Slurm jobs running: 'ID NAME STATE' each
    plane.training.StopTraining(pb.StopTrainingRequest(job_id=job.id), timeout=60)
    assert plane.get(job.id).state == job_pb2.JOB_STATE_CANCELLED
    assert slurm.squeue() == []
    states = {_field(line, "JobState") for line in slurm_jobs(slurm, job.id).values()}
    assert states == {"CANCELLED"}


def test_a_sigkill_of_the_control_plane_mid_job_then_a_restart_re_attaches_by_slurm_job_id(
    slurm: SlurmCluster, demo_data: list[str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    data_dir = tmp_path / "florist"
    data_dir.mkdir()
    flags = ("--launcher", "slurm", "--shared-dir", str(shared), "--advertise-host", "127.0.0.1", "--no-launcher-pool")
    served = serve(data_dir, *flags)
    client = Client(served)
    job = client.jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(demo_data, rounds=40))).job
    client.training.StartTraining(pb.StartTrainingRequest(job_id=job.id), timeout=60)
    wait_for(lambda: client.reached_round(job.id, 2), 120, "round 2")
    client.channel.close()
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(10)
    assert len(slurm.squeue()) == 3 * 3  # the FL processes run on in Slurm while nobody watches them
    again = serve(data_dir, *flags)
    try:
        client = Client(again)
        events = client.events(job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # no event lost across the restart
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        done = client.get(job.id)
        assert sorted(int(n) for n in done.server_metrics["rounds"]) == list(range(1, 41))  # type: ignore[union-attr]
        assert slurm.squeue() == []
    finally:
        assert stop(again) == 0


def test_a_client_slurm_refuses_fails_the_start_and_leaves_nothing_in_slurm(
    plane: ControlPlaneThread, slurm: SlurmCluster, demo_data: list[str]
) -> None:
    message = job_message(demo_data, rounds=2)
    message.resources.CopyFrom(job_pb2.JobResources(gpus=1))  # the node has no GPU: sbatch refuses the clients
    job = plane.create(message)
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (raised.value.details() or "").startswith("sbatch refused the FL client0: ")
    ended = plane.wait_state(job.id, set(TERMINAL), timeout=30)
    assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert slurm.squeue() == []  # the server, submitted first (it asks for no GPU), was cancelled
    assert {_field(line, "JobName") for line in slurm_jobs(slurm, job.id).values()} == {f"florist-{job.id}-server"}
