"""Domain errors <-> gRPC statuses, both directions, in one place.

Servicers turn a FloristError into a google.rpc.Status with details (`to_status`); every internal gRPC client
(agents, the CLI) turns a failed call back into the same FloristError (`from_rpc_error`), so a status means one
thing on both sides of a connection.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from florist_grpc.domain import errors

log = logging.getLogger(__name__)

CODES: dict[type[errors.FloristError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
    errors.Aborted: code_pb2.ABORTED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
}


def to_status(exc: errors.FloristError) -> grpc.Status:
    code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), code_pb2.INTERNAL)
    status = status_pb2.Status(code=code, message=str(exc))
    if isinstance(exc, errors.InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in exc.violations
                ]
            )
        )
        status.details.append(detail)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def internal_status(exc: BaseException) -> grpc.Status:
    ref = uuid.uuid4().hex[:12]
    log.error("internal error (ref %s): %s", ref, exc, exc_info=exc)
    converted: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (ref {ref}); see the server log")
    )
    return converted


_CLASSES: dict[int, type[errors.FloristError]] = {code: cls for cls, code in CODES.items()}


class RemoteError(errors.FloristError):
    """A status with no domain meaning (INTERNAL, UNKNOWN, CANCELLED, ...) from another florist process."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code.name}: {message}")


def field_violations(call: grpc.Call) -> list[errors.FieldViolation]:
    """The BadRequest field violations a failed call carries (none if it carries no such detail)."""
    status = rpc_status.from_call(call)
    if status is None:
        return []
    out: list[errors.FieldViolation] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [errors.FieldViolation(v.field, v.description) for v in bad.field_violations]
    return out


def from_rpc_error(exc: grpc.RpcError) -> errors.FloristError:
    """The domain error a failed call stands for: the inverse of `to_status`."""
    code: grpc.StatusCode = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    cls = _CLASSES.get(code.value[0])
    if cls is errors.InvalidArgument:
        violations: list[errors.FieldViolation] = field_violations(exc) if isinstance(exc, grpc.Call) else []
        return errors.InvalidArgument(violations or [errors.FieldViolation("", message)])
    if cls is None:
        return RemoteError(code, message)
    return cls(message)
