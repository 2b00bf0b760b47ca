"""The one place where domain errors become gRPC statuses (google.rpc.Status with details).

Nothing a caller sends may produce UNKNOWN or INTERNAL: every expected failure is a FloristError subclass with
its own code. Anything else is our bug: it is logged with a reference and the caller gets INTERNAL with that
reference, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from florist_grpc import errors

log = logging.getLogger(__name__)

CODES: dict[type[errors.FloristError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
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


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    """End the call with `status` (grpc-stubs predate aio's abort_with_status, hence the Any)."""
    ctx: Any = context
    await ctx.abort_with_status(status)


Req = TypeVar("Req")
Resp = TypeVar("Resp")


def unary(
    fn: Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """Map the errors of a unary RPC method."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except errors.FloristError as exc:
            status = to_status(exc)
        except Exception as exc:
            status = internal_status(exc)
        await abort(context, status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


def streaming(
    fn: Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    """Map the errors of a server-streaming RPC method."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Resp]:
        try:
            async for item in fn(self, request, context):
                yield item
            return
        except errors.FloristError as exc:
            status = to_status(exc)
        except Exception as exc:
            status = internal_status(exc)
        await abort(context, status)

    return wrapper
