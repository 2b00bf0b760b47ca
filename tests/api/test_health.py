"""grpc.health.v1: SERVING while the store and Redis answer, NOT_SERVING when Redis is gone."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for


def status(plane: ControlPlaneThread, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(plane.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_is_serving_overall_and_per_florist_service(plane: ControlPlaneThread) -> None:
    for service in ("", "florist.v1.JobService", "florist.v1.TrainingService", "florist.v1.CatalogService"):
        assert status(plane, service) == health_pb2.HealthCheckResponse.SERVING


def test_health_turns_not_serving_when_redis_is_unreachable(plane: ControlPlaneThread) -> None:
    from tests.metrics.test_redis_supervision import redis_down

    with redis_down(plane):
        wait_for(lambda: status(plane) == health_pb2.HealthCheckResponse.NOT_SERVING, 15, "NOT_SERVING")
        assert status(plane, "florist.v1.TrainingService") == health_pb2.HealthCheckResponse.NOT_SERVING
