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
    request: Any  # None if the call ended before its handler ran
    response: Any  # the unary response; None for streams and failed calls
    context: Context | None  # None if the call ended before its handler ran
    streaming: bool


def _code(context: Context, failure: BaseException | None) -> grpc.StatusCode:
    # A stream closed by its consumer (GeneratorExit: grpc dropped it after the call was cancelled) is cancelled.
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # the aio context may hand back the numeric code
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if failure is not None else grpc.StatusCode.OK


class _Call:
    """One observed call: it ends exactly once, whichever of its handler or its task sees the end first."""

    def __init__(self, method: str, streaming: bool, on_end: Callable[[CallEnd], None]) -> None:
        self.method = method
        self.streaming = streaming
        self.on_end = on_end
        self.began = time.perf_counter()
        self.request: Any = None
        self.context: Context | None = None
        self.ended = False

    def end(self, code: grpc.StatusCode, response: Any = None) -> None:
        if not self.ended:
            self.ended = True
            seconds = time.perf_counter() - self.began
            self.on_end(CallEnd(self.method, code, seconds, self.request, response, self.context, self.streaming))

    def end_with_task(self, task: asyncio.Task[Any]) -> None:
        """The call's task is done and its handler never said how it ended: it never ran (the call was
        cancelled while its request was awaited) or it was cut while grpc was sending one of its messages."""
        self.end(grpc.StatusCode.CANCELLED)


def observe(
    handler: Handler,
    method: str,
    on_end: Callable[[CallEnd], None],
    on_start: Callable[[bool], None] = lambda streaming: None,
) -> Handler:
    """`handler` with `on_start(streaming)` called as each call begins and `on_end` once as it ends.

    Call from an interceptor: it runs inside the call's own task, whose end is the call's end, so every call that
    reached the application is seen to end, even one cut before its handler ran or before its first message.
    """
    if handler is None or not method.startswith(OBSERVED_PREFIX) or handler.request_streaming:
        return handler
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        behavior: Any = handler.unary_stream
        if behavior is None or not inspect.isasyncgenfunction(behavior):
            return handler
        call = _started(method, True, on_start, on_end)

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            call.request, call.context = request, context
            failure = None
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.end(_code(context, failure))

        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    unary_behavior: Any = handler.unary_unary
    if unary_behavior is None:
        return handler
    unary_call = _started(method, False, on_start, on_end)

    async def unary(request: Any, context: Context) -> Any:
        unary_call.request, unary_call.context = request, context
        failure, response = None, None
        try:
            response = await unary_behavior(request, context)
            return response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            unary_call.end(_code(context, failure), response)

    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


def _started(
    method: str, streaming: bool, on_start: Callable[[bool], None], on_end: Callable[[CallEnd], None]
) -> _Call:
    call = _Call(method, streaming, on_end)
    on_start(streaming)
    task = asyncio.current_task()
    if task is not None:  # grpc.aio runs interceptors inside the call's task
        task.add_done_callback(call.end_with_task)
    return call
