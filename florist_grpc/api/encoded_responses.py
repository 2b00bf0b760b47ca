"""Methods whose servicer yields responses already encoded, registered through the generated code unchanged.

A response serializer of None makes grpc send the bytes a handler yields as they are
(grpc/_cython/_cygrpc/aio/server.pyx.pxi: `serialize(None, message)` is `message`). StreamMetrics uses it so that
each event is encoded once and the same bytes go to every stream; callers still receive the typed response.
The generated `add_<Service>Servicer_to_server` registers every handler twice (by method name, and through a
generic handler); `sending_encoded` hands it a server on which both registrations drop the serializer of the
methods named.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:  # grpc's runtime classes are not generic; only the stubs are
    Handler = grpc.RpcMethodHandler
    GenericHandler = grpc.GenericRpcHandler


def _raw(handler: Handler | None, method: str, methods: Collection[str]) -> Handler | None:
    if handler is None or method not in methods or not handler.response_streaming or handler.request_streaming:
        return handler
    behavior: Any = handler.unary_stream
    return grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=None
    )


class _RawGeneric(GenericHandler):
    def __init__(self, handler: GenericHandler, methods: Collection[str]) -> None:
        self._handler = handler
        self._methods = methods

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        return _raw(self._handler.service(handler_call_details), handler_call_details.method, self._methods)


class _Registration:
    def __init__(self, server: grpc.aio.Server, methods: Collection[str]) -> None:
        self._server = server
        self._methods = methods

    def add_generic_rpc_handlers(self, handlers: tuple[GenericHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_RawGeneric(h, self._methods) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        raw = {name: _raw(h, f"/{service}/{name}", self._methods) for name, h in handlers.items()}
        server: Any = self._server  # grpc-stubs predate registered method handlers
        server.add_registered_method_handlers(service, raw)


def sending_encoded(server: grpc.aio.Server, methods: Collection[str]) -> Any:
    """`server` as a generated `add_..._to_server` function sees it, with `methods` (full names, server
    streaming) sending what their servicer yields without serializing it."""
    return _Registration(server, methods)
