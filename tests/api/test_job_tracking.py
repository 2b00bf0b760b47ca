"""Job.tracking through the API: kept as sent, and refused with a field violation per bad field."""

from __future__ import annotations

import grpc
import pytest

from florist_grpc.domain import errors
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.rpc_errors import from_rpc_error
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message


def test_a_jobs_tracking_is_kept_as_sent(plane: ControlPlaneThread) -> None:
    job = job_message(["/d"])
    job.tracking.CopyFrom(job_pb2.TrackingConfig(experiment="vision", tags={"team": "vision", "run/kind": "baseline"}))
    created = plane.create(job)
    assert plane.get(created.id).tracking == job.tracking


def test_bad_tracking_is_invalid_argument_naming_each_field(plane: ControlPlaneThread) -> None:
    job = job_message(["/d"])
    job.tracking.CopyFrom(
        job_pb2.TrackingConfig(experiment="a\tb", tags={"ok": "fine", "cost $": "x", "mlflow.user": "me"})
    )
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(job)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(raised.value)
    assert isinstance(error, errors.InvalidArgument)
    assert sorted(v.field for v in error.violations) == [
        "job.tracking.experiment",
        'job.tracking.tags["cost $"]',
        'job.tracking.tags["mlflow.user"]',
    ]
