"""Requests that cannot be decoded are INVALID_ARGUMENT, not UNKNOWN.

grpc decodes a request with the method's deserializer before any servicer code runs; when protobuf refuses the
bytes (a Struct nested deeper than its recursion limit of 100, or plain garbage) grpc.aio answers UNKNOWN
"Unexpected DecodeError". This interceptor gives every unary-request method a deserializer that turns a
DecodeError into a marker, and a behaviour that answers the marker with INVALID_ARGUMENT (and ErrorInfo
INVALID_REQUEST) before the servicer sees it. Streaming-request methods (the agents' sessions) are left as they
are: their peers are our own agents.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from florist_grpc.api.errors import abort
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.rpc_errors import to_status

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # grpc's runtime class is not generic; only the stubs are
    Handler = grpc.RpcMethodHandler
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request protobuf could not decode."""

    method: str


def _status(method: str) -> grpc.Status:
    return to_status(
        InvalidArgument(
            [FieldViolation("", f"the request is not a valid {method} request (malformed, or nested too deeply)")],
            reason="INVALID_REQUEST",
        )
    )


def _lenient(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return Undecodable(method)

    return decode


def _unary_unary(behavior: Callable[..., Any]) -> Callable[[Any, Context], Awaitable[Any]]:
    async def checked(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await abort(context, _status(request.method))
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return checked


def _unary_stream(behavior: Callable[..., Any]) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await abort(context, _status(request.method))
            return
        responses = behavior(request, context)
        if inspect.isasyncgen(responses):
            async for response in responses:
                yield response
        elif inspect.isawaitable(responses):  # a coroutine writing with context.write()
            await responses
        else:
            for response in responses:
                yield response

    return checked


def with_request_decoding(handler: Handler | None, method: str) -> Handler | None:
    """`handler` with undecodable requests answered INVALID_ARGUMENT (unary requests only)."""
    if handler is None or handler.request_streaming:
        return handler
    kwargs = {
        "request_deserializer": _lenient(handler.request_deserializer, method),
        "response_serializer": handler.response_serializer,
    }
    if handler.response_streaming and handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_unary_stream(handler.unary_stream), **kwargs)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary_unary(handler.unary_unary), **kwargs)
    return handler


class RequestDecoding(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Innermost interceptor of every florist server (see api/grpc_server.build_server)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return with_request_decoding(handler, method)  # type: ignore[return-value]
