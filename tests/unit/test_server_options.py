"""Server options that decide behaviour (not only tuning): why each value is what it is lives in api/grpc_server.py."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from florist_grpc.api.grpc_server import SERVER_OPTIONS, YOUNG_GENERATION_THRESHOLD, build_server


@pytest.fixture
def collector_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_burst_of_stream_opens_fits_the_pending_queue() -> None:
    # grpc core's defaults (1,000 / 3,000) cut ~9% of a 2,000-stream burst (docs/benchmarks.md, streams).
    options = dict(SERVER_OPTIONS)
    assert options["grpc.server.max_pending_requests"] >= options["grpc.max_concurrent_streams"]
    assert options["grpc.server.max_pending_requests_hard_limit"] > options["grpc.server.max_pending_requests"]


def test_port_sharing_is_off() -> None:
    assert dict(SERVER_OPTIONS)["grpc.so_reuseport"] == 0


async def _build_server() -> None:
    build_server([])  # grpc.aio binds a server to the running loop


@pytest.mark.usefixtures("collector_thresholds")
def test_a_serving_process_collects_its_young_generation_less_often() -> None:
    # Streams' per-message objects made CPython's default (700) pause the serving loop ~25 times a second.
    gc.set_threshold(700, 10, 10)
    asyncio.run(_build_server())
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("collector_thresholds")
def test_a_process_that_turned_collection_off_or_higher_keeps_its_choice() -> None:
    for chosen in ((0, 10, 10), (50_000, 5, 5)):
        gc.set_threshold(*chosen)
        asyncio.run(_build_server())
        assert gc.get_threshold() == chosen
