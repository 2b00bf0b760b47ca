"""The queue through the API: StartTraining beyond a limit queues, queued jobs leave the queue in order as capacity
frees (every check again: one that fails ends the job saying why), a stop cancels a queued job, and the queue
keeps its order across a restart.

A simulated job (florist_grpc/testing/simulation.py) holds the one slot of --max-running-jobs 1 where a test needs
a running job; the queued jobs are real, with real data, and a queued job whose data file is gone ends with an
error as it leaves the queue, which shows the order without launching FL processes. test_queued_jobs_train_in_turn
runs real training end to end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish
from tests.helpers import TERMINAL, job_message

QUEUED = job_pb2.JOB_STATE_QUEUED


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    running = ControlPlaneThread.in_dir(tmp_path / "florist", max_running_jobs=1)
    yield running
    running.stop()


def data(tmp_path: Path, name: str) -> list[str]:
    return [str(p) for p in write_synthetic(tmp_path / name, 2, samples_per_client=64)]


def queue_job(plane: ControlPlaneThread, paths: list[str], **fields: int) -> job_pb2.Job:
    message = job_message(paths, rounds=1)
    for key, value in fields.items():
        setattr(message, key, value)
    job = plane.create(message)
    started = plane.start(job.id)
    assert started.queued and not started.server_uuid
    return job


def ended_in_order(plane: ControlPlaneThread, ids: list[str]) -> list[str]:
    """The jobs, in the order they left the queue (the revision of their terminal change)."""
    ended = [plane.wait_state(job_id, TERMINAL, 60) for job_id in ids]
    return [j.id for j in sorted(ended, key=lambda j: j.revision)]


def test_start_beyond_the_limit_queues_and_says_why_in_a_numbered_event(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    running = create_running(plane.plane, n_clients=1)
    job = queue_job(plane, data(tmp_path, "a"))
    got = plane.get(job.id)
    assert got.state == QUEUED and got.HasField("queue_time") and not got.HasField("start_time")
    events = plane.training.StreamMetrics(training_pb.StreamMetricsRequest(job_id=job.id), timeout=10)
    queued = next(iter(events)).event
    assert (queued.sequence, queued.job_state, queued.source.kind) == (1, QUEUED, training_pb.SOURCE_KIND_JOB)
    assert dict(queued.patch) == {"state": "QUEUED", "reason": "1 job(s) run, the most --max-running-jobs allows"}
    events.cancel()
    for call, request in (
        (plane.training.StartTraining, training_pb.StartTrainingRequest(job_id=job.id)),
        (plane.jobs.DeleteJob, job_pb.DeleteJobRequest(job_id=job.id)),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "QUEUED" in raised.value.details()
    finish(plane.plane, running)


def test_stop_cancels_a_queued_job_and_it_never_starts(plane: ControlPlaneThread, tmp_path: Path) -> None:
    running = create_running(plane.plane, n_clients=1)
    job = queue_job(plane, data(tmp_path, "a"))
    stopped = plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job.id), timeout=10).job
    assert stopped.state == job_pb2.JOB_STATE_CANCELLED and not stopped.HasField("start_time")
    finish(plane.plane, running)
    assert [e.job_state for e in plane.events(job.id)] == [QUEUED, job_pb2.JOB_STATE_CANCELLED]


def test_queued_jobs_leave_in_priority_then_queue_order_each_checked_again(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    """Their data is removed while they wait: each one that leaves the queue fails its check, saying why, and
    makes room for the next."""
    running = create_running(plane.plane, n_clients=1)
    paths = {name: data(tmp_path, name) for name in ("first", "second", "urgent")}
    first = queue_job(plane, paths["first"])
    second = queue_job(plane, paths["second"])
    urgent = queue_job(plane, paths["urgent"], priority=5)  # no auth file: the caller is an admin
    for files in paths.values():
        Path(files[0]).unlink()
    finish(plane.plane, running)
    assert ended_in_order(plane, [first.id, second.id, urgent.id]) == [urgent.id, first.id, second.id]
    ended = plane.get(first.id)
    assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert ended.error_message.startswith("could not start from the queue: ")
    assert "job.clients[0].data_path" in ended.error_message
    assert [e.job_state for e in plane.events(first.id)] == [QUEUED, job_pb2.JOB_STATE_FINISHED_WITH_ERROR]


def test_the_queue_keeps_its_order_and_limit_across_a_restart(tmp_path: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", max_running_jobs=1)
    port = plane.plane.port
    create_running(plane.plane, n_clients=1)  # nothing launched: the restart's recovery ends it
    paths = {name: data(tmp_path, name) for name in ("a", "b", "c")}
    jobs = [queue_job(plane, paths[name]) for name in ("a", "b", "c")]
    plane.stop()
    for files in paths.values():
        Path(files[0]).unlink()
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", max_running_jobs=1, port=port)
    try:
        assert ended_in_order(plane, [j.id for j in jobs]) == [j.id for j in jobs]
        assert all("could not start from the queue" in plane.get(j.id).error_message for j in jobs)
    finally:
        plane.stop()


def test_only_an_admin_sets_a_priority(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in ("op", "root")}
    tokens.write_text(f"operator {digest['op']} ann\nadmin {digest['root']} root\n")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens)
    try:
        message = job_message(["/d/a.pt"])
        message.priority = 3
        request = job_pb.CreateJobRequest(job=message)
        with pytest.raises(grpc.RpcError) as raised:
            plane.jobs.CreateJob(request, timeout=10, metadata=(("authorization", "Bearer op"),))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "only an admin orders the queue" in raised.value.details()
        job = plane.jobs.CreateJob(request, timeout=10, metadata=(("authorization", "Bearer root"),)).job
        assert job.priority == 3
    finally:
        plane.stop()


@pytest.mark.slow
def test_queued_jobs_train_in_turn(plane: ControlPlaneThread, tmp_path: Path) -> None:
    """Real training: the second job waits for the first, then starts exactly as StartTraining would."""
    first = plane.create(job_message(data(tmp_path, "first"), rounds=1))
    assert not plane.start(first.id).queued
    second = queue_job(plane, data(tmp_path, "second"))
    done = plane.wait_state(first.id, TERMINAL, 180)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    finished = plane.wait_state(second.id, TERMINAL, 180)
    assert finished.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, finished.error_message
    assert finished.start_time.ToDatetime() >= done.end_time.ToDatetime()
    assert [e.job_state for e in plane.events(second.id) if e.source.kind == training_pb.SOURCE_KIND_JOB] == [
        QUEUED,
        job_pb2.JOB_STATE_IN_PROGRESS,
        job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,
    ]
