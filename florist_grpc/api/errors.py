"""Servicer methods end with a status, never a traceback: domain errors are mapped by florist_grpc.rpc_errors.

Nothing a caller sends may produce UNKNOWN or INTERNAL: every expected failure is a FloristError subclass with
its own code. Anything else is our bug: it is logged with a reference and the caller gets INTERNAL with that
reference, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from florist_grpc.domain import errors
from florist_grpc.rpc_errors import internal_status, to_status


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    """End the call with `status` (grpc-stubs predate aio's abort_with_status, hence the Any)."""
    ctx: Any = context
    await ctx.abort_with_status(status)


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


def status_of_exception(exc: Exception) -> grpc.Status:
    """The status a failed call ends with: a domain error's own (rpc_errors), INTERNAL with a logged reference
    for anything else. Every transport (gRPC here, the browser's Connect in connect_calls.py) uses it."""
    return to_status(exc) if isinstance(exc, errors.FloristError) else internal_status(exc)


def unary(
    fn: Callable[[Any, Req, Context], Awaitable[Resp]],
) -> Callable[[Any, Req, Context], Awaitable[Resp]]:
    """Map the errors of a unary RPC method."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: Context) -> Resp:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            status = status_of_exception(exc)
        await abort(context, status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


def streaming(
    fn: Callable[[Any, Req, Context], AsyncIterator[Resp]],
) -> Callable[[Any, Req, Context], AsyncIterator[Resp]]:
    """Map the errors of a server-streaming RPC method."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: Context) -> AsyncIterator[Resp]:
        try:
            async for item in fn(self, request, context):
                yield item
            return
        except Exception as exc:
            status = status_of_exception(exc)
        await abort(context, status)

    return wrapper


def bidi(
    fn: Callable[[Any, AsyncIterator[Req], Context], Awaitable[None]],
) -> Callable[[Any, AsyncIterator[Req], Context], Awaitable[None]]:
    """Map the errors of a bidirectional-streaming RPC method written as a coroutine that writes its responses
    with `context.write` (grpc.aio serves that form too; it lets the method read and write concurrently)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, requests: AsyncIterator[Req], context: Context) -> None:
        try:
            await fn(self, requests, context)
            return
        except Exception as exc:
            status = status_of_exception(exc)
        await abort(context, status)

    return wrapper
