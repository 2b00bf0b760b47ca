"""Domain errors <-> gRPC statuses, both directions, in one place.

Servicers turn a FloristError into a google.rpc.Status with details (`to_status`); every internal gRPC client
(agents, the CLI) turns a failed call back into the same FloristError (`from_rpc_error`), so a status means one
thing on both sides of a connection. Every status carries a google.rpc.ErrorInfo (reason, domain `florist.v1`,
metadata; AIP-193), and INVALID_ARGUMENT also a google.rpc.BadRequest with one field violation per bad field.
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

import grpc
from google.protobuf import any_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from florist_grpc.domain import errors

log = logging.getLogger(__name__)

DOMAIN = "florist.v1"

# A status travels in response metadata, which a client accepts only up to a limit (grpc.max_metadata_size,
# 8 KiB by default in grpc-python), and twice: the message percent-encoded in grpc-message, and the whole
# google.rpc.Status base64-encoded in grpc-status-details-bin. These budgets keep both well under that limit
# whatever a caller sent: a status that does not fit reaches the client as RESOURCE_EXHAUSTED instead.
MESSAGE_BYTES = 512
VIOLATIONS_BYTES = 2048
METADATA_VALUE_CHARS = errors.QUOTE_CHARS

CODES: dict[type[errors.FloristError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.OutOfRange: code_pb2.OUT_OF_RANGE,
    errors.DataLoss: code_pb2.DATA_LOSS,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
    errors.Aborted: code_pb2.ABORTED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
}


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (never inside a character)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def _packed(detail: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _bad_request(violations: list[errors.FieldViolation]) -> error_details_pb2.BadRequest:
    """The violations that fit the budget, then one saying how many more there were."""
    out = error_details_pb2.BadRequest()
    used = 0
    for i, v in enumerate(violations):
        field, description = _cut(v.field, 256), _cut(v.description, 512)
        used += len(field.encode()) + len(description.encode())
        if used > VIOLATIONS_BYTES:
            out.field_violations.add(field="", description=f"... and {len(violations) - i} more violations")
            break
        out.field_violations.add(field=field, description=description)
    return out


def error_info(reason: str, metadata: dict[str, str] | None = None) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason,
        domain=DOMAIN,
        metadata={_cut(k, 64): _cut(v, METADATA_VALUE_CHARS) for k, v in (metadata or {}).items()},
    )


def code_of(exc: errors.FloristError) -> int:
    """The gRPC status code (google.rpc.Code) of a domain error."""
    return next((c for cls, c in CODES.items() if isinstance(exc, cls)), code_pb2.INTERNAL)


def to_status(exc: errors.FloristError) -> grpc.Status:
    status = status_pb2.Status(code=code_of(exc), message=_cut(str(exc), MESSAGE_BYTES))
    # BadRequest first, where clients written before ErrorInfo look for it. FAILED_PRECONDITION may carry field
    # violations too: which client's data file blocks a start.
    if isinstance(exc, errors.InvalidArgument) or (isinstance(exc, errors.FailedPrecondition) and exc.violations):
        status.details.append(_packed(_bad_request(exc.violations)))
    status.details.append(_packed(error_info(exc.reason, exc.metadata)))
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def internal_status(exc: BaseException) -> grpc.Status:
    ref = uuid.uuid4().hex[:12]
    log.error("internal error (ref %s): %s", ref, exc, exc_info=exc)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (ref {ref}); see the server log")
    status.details.append(_packed(error_info("INTERNAL", {"ref": ref})))
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


_CLASSES: dict[int, type[errors.FloristError]] = {code: cls for cls, code in CODES.items()}


class RemoteError(errors.FloristError):
    """A status with no domain meaning (INTERNAL, UNKNOWN, CANCELLED, ...) from another florist process."""

    def __init__(
        self, code: grpc.StatusCode, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        self.code = code
        super().__init__(f"{code.name}: {message}", reason=reason or code.name, metadata=metadata)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message of a failed call, whether a synchronous stub's (a grpc.Call) or a grpc.aio one's
    (an AioRpcError, with the same code()/details() as plain methods); UNKNOWN and its text for anything else."""
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return exc.code(), exc.details() or str(exc)
    return grpc.StatusCode.UNKNOWN, str(exc)


def status_details(exc: object) -> list[any_pb2.Any]:
    """The google.rpc.Status details an RPC error carries (BadRequest, ErrorInfo, ...); none for anything else."""
    if not isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return []
    try:
        # from_call reads code(), details() and trailing_metadata() only, which an AioRpcError has too.
        status = rpc_status.from_call(cast(grpc.Call, exc))
    except ValueError:  # a details trailer that contradicts the call's code or message
        return []
    return list(status.details) if status is not None else []


def field_violations(call: grpc.Call) -> list[errors.FieldViolation]:
    """The BadRequest field violations a failed call carries (none if it carries no such detail)."""
    out: list[errors.FieldViolation] = []
    for detail in status_details(call):
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [errors.FieldViolation(v.field, v.description) for v in bad.field_violations]
    return out


def reason_of(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo a failed call carries, if any."""
    for detail in status_details(exc):
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def from_rpc_error(exc: grpc.RpcError) -> errors.FloristError:
    """The domain error a failed call stands for: the inverse of `to_status` (code, message, reason, metadata)."""
    code, message = status_of(exc)
    info = reason_of(exc)
    reason = info.reason if info is not None and info.domain == DOMAIN and info.reason else None
    metadata = dict(info.metadata) if info is not None and reason is not None else None
    cls = _CLASSES.get(code.value[0])
    if cls is errors.InvalidArgument:
        violations: list[errors.FieldViolation] = field_violations(exc) if isinstance(exc, grpc.Call) else []
        return errors.InvalidArgument(
            violations or [errors.FieldViolation("", message)], reason=reason, metadata=metadata
        )
    if cls is None:
        return RemoteError(code, message, reason=reason, metadata=metadata)
    if cls is errors.FailedPrecondition:
        violations = field_violations(exc) if isinstance(exc, grpc.Call) else []
        return errors.FailedPrecondition(message, violations, reason=reason, metadata=metadata)
    return cls(message, reason=reason, metadata=metadata)
