"""What a hostile request may get back, and how to check it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from florist_grpc.testing.plane import ControlPlaneThread

# The documented answers to a bad request (DESIGN.md "Errors"); never UNKNOWN, INTERNAL or RESOURCE_EXHAUSTED.
DOCUMENTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
}


def error_of(call: Callable[[], Any]) -> grpc.RpcError | None:
    """The error `call` ends with (a stream is read to its end), or None if it succeeds."""
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            for _ in result:
                pass
    except grpc.RpcError as exc:
        return exc
    return None


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code()} without google.rpc.Status details: {error.details()}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"{error.code()} without ErrorInfo")


def assert_documented(error: grpc.RpcError | None, allowed: set[grpc.StatusCode] = DOCUMENTED) -> None:
    """None (the request was fine after all) or a documented code with ErrorInfo and a short message."""
    if error is None:
        return
    assert isinstance(error, grpc.Call)
    assert error.code() in allowed, f"{error.code()}: {(error.details() or '')[:300]}"
    assert len((error.details() or "").encode()) <= 1024
    assert error_info(error).domain == "florist.v1"


def still_serving(plane: ControlPlaneThread) -> None:
    health = health_pb2_grpc.HealthStub(plane.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = catalog_service_pb2_grpc.CatalogServiceStub(plane.channel)
    assert stub.GetCatalog(catalog_service_pb2.GetCatalogRequest(), timeout=10).strategies
