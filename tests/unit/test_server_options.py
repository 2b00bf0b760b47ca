"""Server options that decide behaviour (not only tuning): why each value is what it is lives in api/grpc_server.py."""

from __future__ import annotations

from florist_grpc.api.grpc_server import SERVER_OPTIONS


def test_a_burst_of_stream_opens_fits_the_pending_queue() -> None:
    # grpc core's defaults (1,000 / 3,000) cut ~9% of a 2,000-stream burst (docs/benchmarks.md, streams).
    options = dict(SERVER_OPTIONS)
    assert options["grpc.server.max_pending_requests"] >= options["grpc.max_concurrent_streams"]
    assert options["grpc.server.max_pending_requests_hard_limit"] > options["grpc.server.max_pending_requests"]


def test_port_sharing_is_off() -> None:
    assert dict(SERVER_OPTIONS)["grpc.so_reuseport"] == 0
