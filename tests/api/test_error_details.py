"""Every error status carries google.rpc.ErrorInfo (AIP-193), and rpc_errors reads back what it wrote."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from florist_grpc.domain import errors
from florist_grpc.proto.florist.v1 import job_service_pb2
from florist_grpc.rpc_errors import DOMAIN, from_rpc_error, internal_status, to_status
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message


def details(status: grpc.Status) -> status_pb2.Status:
    parsed = status_pb2.Status()
    parsed.ParseFromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    return parsed


def info_of(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    found = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(found) == 1
    info = error_details_pb2.ErrorInfo()
    found[0].Unpack(info)
    return info


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.NotFound("gone"), "NOT_FOUND"),
        (errors.job_not_found("j1"), "JOB_NOT_FOUND"),
        (errors.FailedPrecondition("busy", reason="JOB_NOT_STARTABLE"), "JOB_NOT_STARTABLE"),
        (errors.OutOfRange("past"), "OUT_OF_RANGE"),
        (errors.DataLoss("flipped", reason="MODEL_CORRUPT"), "MODEL_CORRUPT"),
        (errors.Unavailable("down", reason="STORE_UNAVAILABLE"), "STORE_UNAVAILABLE"),
        (errors.InvalidArgument([errors.FieldViolation("job.model", "unknown")], reason="INVALID_JOB"), "INVALID_JOB"),
        (errors.PermissionDenied("no"), "PERMISSION_DENIED"),
    ],
)
def test_every_domain_error_becomes_a_status_with_its_reason(error: errors.FloristError, reason: str) -> None:
    info = info_of(details(to_status(error)))
    assert (info.reason, info.domain) == (reason, DOMAIN)


def test_out_of_range_has_its_own_code() -> None:
    assert to_status(errors.OutOfRange("past")).code == grpc.StatusCode.OUT_OF_RANGE


def test_data_loss_has_its_own_code() -> None:
    status = to_status(errors.DataLoss("flipped", reason="MODEL_CORRUPT"))
    assert status.code == grpc.StatusCode.DATA_LOSS


def test_an_internal_error_carries_its_log_reference() -> None:
    status = internal_status(RuntimeError("bug"))
    info = info_of(details(status))
    assert status.code == grpc.StatusCode.INTERNAL and info.reason == "INTERNAL" and info.metadata["ref"]


def test_invalid_argument_carries_both_bad_request_and_error_info() -> None:
    status = details(to_status(errors.InvalidArgument([errors.FieldViolation("a", "b")])))
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.details[0].Is(error_details_pb2.BadRequest.DESCRIPTOR)
    assert info_of(status).reason == "INVALID_ARGUMENT"


def test_a_status_fits_the_default_client_metadata_limit_however_many_violations() -> None:
    violations = [errors.FieldViolation("\U0001f600" * 300, "\u00e9" * 1000) for _ in range(1000)]
    status = to_status(errors.InvalidArgument(violations))
    # grpc-message is percent-encoded (up to 3 bytes per byte), grpc-status-details-bin base64 (4 per 3).
    message = len(status.details.encode()) * 3
    binary = len(dict(status.trailing_metadata)["grpc-status-details-bin"]) * 4 // 3
    assert message + binary < 8 * 1024
    assert "more violations" in details(status).details[0].value.decode("utf-8", "replace")


def test_a_client_reads_reason_and_metadata_back_from_a_real_call(plane: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.GetJob(job_service_pb2.GetJobRequest(job_id="missing"), timeout=10)
    error = from_rpc_error(raised.value)
    assert isinstance(error, errors.NotFound)
    assert (error.reason, error.metadata) == ("JOB_NOT_FOUND", {"job_id": "missing"})


def test_a_client_reads_violations_and_reason_back_from_a_real_call(plane: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(job_message(["/d"], rounds=0))
    error = from_rpc_error(raised.value)
    assert isinstance(error, errors.InvalidArgument) and error.reason == "INVALID_JOB"
    assert [v.field for v in error.violations] == ["job.server_config.n_server_rounds"]


def test_deleting_a_deleted_job_is_job_not_found_with_its_id(plane: ControlPlaneThread) -> None:
    job = plane.create(job_message(["/d"]))
    plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job.id), timeout=10)
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job.id), timeout=10)
    error = from_rpc_error(raised.value)
    assert error.reason == "JOB_NOT_FOUND" and error.metadata["job_id"] == job.id
