"""Wrapping a gRPC method handler to observe each call's start and end: what the metrics and audit interceptors
share. Only florist's own unary and server-streaming (async generator) methods are wrapped; anything else (health,
reflection, bidirectional sessions) is passed through untouched.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # grpc's runtime class is not generic; only the stubs are
    Handler = grpc.RpcMethodHandler

Context = grpc.aio.ServicerContext[Any, Any]
OBSERVED_PREFIX = "/florist.v1."


@dataclass(frozen=True)
class CallEnd:
    """How one call ended (a dataclass, so observers gain fields without signature changes)."""

    method: str
    code: grpc.StatusCode
    seconds: float
    request: Any
    response: Any  # the unary response; None for streams and failed calls
    context: Context
    streaming: bool


def _code(context: Context, failure: BaseException | None) -> grpc.StatusCode:
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # the aio context may hand back the numeric code
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if failure is not None else grpc.StatusCode.OK


def observe(
    handler: Handler,
    method: str,
    on_end: Callable[[CallEnd], None],
    on_start: Callable[[bool], None] = lambda streaming: None,
) -> Handler:
    """`handler` with `on_start(streaming)` called as each call begins and `on_end` once as it ends."""
    if handler is None or not method.startswith(OBSERVED_PREFIX) or handler.request_streaming:
        return handler
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        behavior: Any = handler.unary_stream
        if behavior is None or not inspect.isasyncgenfunction(behavior):
            return handler

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            began, failure = time.perf_counter(), None
            on_start(True)
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                failure = exc
                raise
            finally:
                on_end(
                    CallEnd(method, _code(context, failure), time.perf_counter() - began, request, None, context, True)
                )

        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    unary_behavior: Any = handler.unary_unary
    if unary_behavior is None:
        return handler

    async def unary(request: Any, context: Context) -> Any:
        began, failure, response = time.perf_counter(), None, None
        on_start(False)
        try:
            response = await unary_behavior(request, context)
            return response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            seconds = time.perf_counter() - began
            on_end(CallEnd(method, _code(context, failure), seconds, request, response, context, False))

    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
