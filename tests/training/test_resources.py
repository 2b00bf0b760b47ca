"""Job.resources under the local launcher: cpus become the FL processes' torch threads; the rest is ignored."""

from __future__ import annotations

import pytest

from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message

pytestmark = pytest.mark.slow


def log_of(plane: ControlPlaneThread, job_id: str, source: pb.LogSource) -> str:
    chunks = plane.training.StreamLogs(pb.StreamLogsRequest(job_id=job_id, source=source), timeout=30)
    return "".join(c.text for c in chunks)


def test_cpus_are_torch_threads_of_every_local_fl_process(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    message = job_message(demo_data, rounds=1)
    message.resources.CopyFrom(job_pb2.JobResources(cpus=2, memory_mib=64, gpus=1))  # memory, gpus: not here
    job = plane.create(message)
    plane.start(job.id)
    assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    for source in (pb.LogSource(server=True), pb.LogSource(client_index=0), pb.LogSource(client_index=1)):
        assert "using 2 torch threads (Job.resources.cpus)" in log_of(plane, job.id, source)
    plain = plane.create(job_message(demo_data, rounds=1))
    plane.start(plain.id)
    plane.events(plain.id)
    assert "torch threads" not in log_of(plane, plain.id, pb.LogSource(client_index=0))
