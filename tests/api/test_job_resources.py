"""Job.resources through the API: kept as sent (a fraction of a second rounds up), refused with a field violation
per bad field at CreateJob."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from florist_grpc.domain import errors
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.rpc_errors import from_rpc_error
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message


def test_a_jobs_resources_are_kept_as_sent(plane: ControlPlaneThread) -> None:
    job = job_message(["/d"])
    job.resources.CopyFrom(
        job_pb2.JobResources(cpus=2, memory_mib=1024, gpus=1, time_limit=Duration(seconds=600, nanos=1))
    )
    created = plane.create(job)
    got = plane.get(created.id).resources
    assert (got.cpus, got.memory_mib, got.gpus, got.time_limit.seconds) == (2, 1024, 1, 601)


def test_bad_resources_are_invalid_argument_naming_each_field(plane: ControlPlaneThread) -> None:
    job = job_message(["/d"])
    job.resources.CopyFrom(
        job_pb2.JobResources(cpus=-1, memory_mib=2**31 - 1, gpus=65, time_limit=Duration(seconds=-5))
    )
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(job)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(raised.value)
    assert isinstance(error, errors.InvalidArgument)
    assert sorted(v.field for v in error.violations) == [
        "job.resources.cpus",
        "job.resources.gpus",
        "job.resources.memory_mib",
        "job.resources.time_limit",
    ]
