"""Wrapping a gRPC method handler to observe each call: its start, every message in and out, and its end. What the
metrics and audit interceptors share. Every kind of method is observed (unary, server, client and bidirectional
streams; servicers that yield and those that write with `context.write`), florist's own and the standard ones
(health, reflection), as go-grpc-prometheus does.

Every call that reaches the application is seen to start and to end exactly once, even one whose handler never
runs (the client went away while its request was awaited) or that is cut while grpc sends one of its messages
(outside the handler, which then never hears of it): `observe` runs inside the call's own task, whose end is the
call's end.
"""

from __future__ import annotations

import asyncio
import enum
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
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # what context.read() returns at the end; grpc-stubs lack it


class CallKind(enum.Enum):
    """The shape of a method; the values are go-grpc-prometheus's `grpc_type` label."""

    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"

    @staticmethod
    def of(handler: Handler) -> CallKind:
        kinds = {
            (False, False): CallKind.UNARY,
            (True, False): CallKind.CLIENT_STREAM,
            (False, True): CallKind.SERVER_STREAM,
            (True, True): CallKind.BIDI_STREAM,
        }
        return kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]


@dataclass(frozen=True)
class CallEnd:
    """How one call ended (a dataclass, so observers gain fields without signature changes)."""

    method: str
    kind: CallKind
    code: grpc.StatusCode
    seconds: float
    request: Any  # the request of a unary-request call; None for request streams and calls cut before their handler
    response: Any  # the unary response; None for streams and failed calls
    context: Context | None  # None for a call cut before its handler ran


def _ignore() -> None:
    pass


@dataclass(frozen=True)
class CallHooks:
    """What an interceptor hears about each call: `started` as it begins, `received` / `sent` per message, `ended`
    once as it ends (whatever the outcome, cancellation included)."""

    ended: Callable[[CallEnd], None]
    started: Callable[[], None] = _ignore
    received: Callable[[], None] = _ignore
    sent: Callable[[], None] = _ignore


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


class _CountedRequests:
    """A request stream that counts each message the servicer takes from it."""

    def __init__(self, requests: Any, received: Callable[[], None]) -> None:
        self._requests = requests
        self._received = received

    def __aiter__(self) -> _CountedRequests:
        return self

    async def __anext__(self) -> Any:
        message = await self._requests.__anext__()
        self._received()
        return message


class _CountedContext:
    """The servicer's context, counting what it reads and writes itself (`context.read()` / `context.write()`)."""

    def __init__(self, context: Context, hooks: CallHooks) -> None:
        self._context = context
        self._hooks = hooks

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not EOF:
            self._hooks.received()
        return message

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._hooks.sent()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Call:
    """One observed call: started once, ended once, by its handler or, failing that, by its task."""

    def __init__(self, method: str, kind: CallKind, hooks: CallHooks) -> None:
        self.method = method
        self.kind = kind
        self.hooks = hooks
        self.began = time.perf_counter()
        self.ended = False
        hooks.started()
        task = asyncio.current_task()
        if task is not None:  # grpc.aio runs interceptors inside the call's task
            task.add_done_callback(self.end_with_task)

    def end(self, code: grpc.StatusCode, request: Any, response: Any, context: Context | None) -> None:
        if not self.ended:
            self.ended = True
            seconds = time.perf_counter() - self.began
            self.hooks.ended(CallEnd(self.method, self.kind, code, seconds, request, response, context))

    def end_with_task(self, task: asyncio.Task[Any]) -> None:
        """The call's task is done and its handler never said how the call ended: it never ran, or it was cut while
        grpc was sending one of its messages."""
        self.end(grpc.StatusCode.CANCELLED, None, None, None)


def observe(handler: Handler, method: str, hooks: CallHooks) -> Handler:
    """`handler` with `hooks` told about each of its calls. Call it from an interceptor (each call's own task): the
    call counts as started from then on. A handler whose behaviour is not a coroutine or an async generator
    function (a synchronous servicer) is returned as it is."""
    if handler is None:
        return handler
    kind = CallKind.of(handler)
    behavior: Any = {
        CallKind.UNARY: handler.unary_unary,
        CallKind.CLIENT_STREAM: handler.stream_unary,
        CallKind.SERVER_STREAM: handler.unary_stream,
        CallKind.BIDI_STREAM: handler.stream_stream,
    }[kind]
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        return handler
    requests_stream = kind in (CallKind.CLIENT_STREAM, CallKind.BIDI_STREAM)
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    call = _Call(method, kind, hooks)

    def begin(request: Any, context: Context) -> tuple[Any, Any]:
        if requests_stream:
            return _CountedRequests(request, hooks.received), _CountedContext(context, hooks)
        hooks.received()
        return request, _CountedContext(context, hooks)

    def end(request: Any, response: Any, context: Context, failure: BaseException | None) -> None:
        call.end(_code(context, failure), None if requests_stream else request, response, context)

    async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
        failure = None
        observed_request, observed_context = begin(request, context)
        try:
            async for response in behavior(observed_request, observed_context):
                hooks.sent()
                yield response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            end(request, None, context, failure)

    async def run(request: Any, context: Context) -> Any:
        failure, response = None, None
        observed_request, observed_context = begin(request, context)
        try:
            response = await behavior(observed_request, observed_context)
            if kind in (CallKind.UNARY, CallKind.CLIENT_STREAM):
                hooks.sent()  # the response; a stream written with context.write() counts itself
            return response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            end(request, response, context, failure)

    # The wrapper has the servicer's own form (async generator or coroutine): grpc.aio serves each differently.
    wrapped = generate if inspect.isasyncgenfunction(behavior) else run
    factory: Any = {
        CallKind.UNARY: grpc.unary_unary_rpc_method_handler,
        CallKind.CLIENT_STREAM: grpc.stream_unary_rpc_method_handler,
        CallKind.SERVER_STREAM: grpc.unary_stream_rpc_method_handler,
        CallKind.BIDI_STREAM: grpc.stream_stream_rpc_method_handler,
    }[kind]
    return factory(wrapped, **kwargs)  # type: ignore[no-any-return]
