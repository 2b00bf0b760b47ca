"""Every StreamMetrics call is counted once with how it ended, even one cut before its first message arrived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from florist_grpc.api.call_observer import CallEnd, CallHooks, CallKind, observe
from florist_grpc.domain.model import SERVER_SOURCE
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.store.base import ReportChange
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.api.test_interceptors import grpc_labels, scrape
from tests.helpers import wait_for

STREAM = "florist.v1.TrainingService/StreamMetrics"


@pytest.fixture
def measured(tmp_path: Path) -> Iterator[tuple[ControlPlaneThread, int]]:
    port = free_service_port()
    running = ControlPlaneThread.in_dir(tmp_path / "florist", metrics_port=port)
    yield running, port
    running.stop()


def test_a_call_cut_before_its_handler_ran_is_counted_cancelled() -> None:
    async def never_called(request: Any, context: Any) -> AsyncIterator[bytes]:
        yield b""  # pragma: no cover

    async def scenario() -> list[CallEnd]:
        ends: list[CallEnd] = []
        handler = grpc.unary_stream_rpc_method_handler(never_called)

        async def call() -> None:  # what grpc.aio runs per call: interceptors, then the request, then the handler
            observe(handler, f"/{STREAM}", CallHooks(ends.append))
            await asyncio.Event().wait()  # the request never arrives: the client went away first

        task = asyncio.create_task(call())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        return ends

    ends = asyncio.run(scenario())
    assert [(e.method, e.kind, e.code) for e in ends] == [
        (f"/{STREAM}", CallKind.SERVER_STREAM, grpc.StatusCode.CANCELLED)
    ]


def test_a_stream_cut_while_its_first_message_is_on_its_way_is_counted_cancelled(
    measured: tuple[ControlPlaneThread, int],
) -> None:
    plane, port = measured
    job = simulation.create_running(plane.plane, n_clients=1, attach=False)
    # A first event far larger than any flow-control window: sending it waits for a reader that never reads.
    big = {"blob": "x" * (8 * 1024 * 1024)}
    plane.plane.store.append_report_changes([ReportChange(job.job_id, SERVER_SOURCE, {}, big, datetime.now(UTC))])
    call = plane.training.StreamMetrics(pb.StreamMetricsRequest(job_id=job.job_id, after_sequence=1), timeout=60)
    assert call.initial_metadata() is not None  # the server confirmed the stream and is sending the event
    call.cancel()

    started = ("grpc_server_started_total", grpc_labels("server_stream", STREAM))
    cancelled = ("grpc_server_handled_total", grpc_labels("server_stream", STREAM, grpc_code="CANCELLED"))
    active = ("florist_active_streams", (("method", STREAM),))
    wait_for(lambda: scrape(port).get(active) == 0, 10, "the stream to end")
    samples = scrape(port)
    assert (samples[started], samples[cancelled], samples[active]) == (1, 1, 0)
