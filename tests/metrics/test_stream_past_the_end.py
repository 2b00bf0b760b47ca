"""StreamMetrics asked for events past the last one: it ends with the job, or is OUT_OF_RANGE once it has ended."""

from __future__ import annotations

import concurrent.futures

import grpc
import pytest

from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for
from tests.metrics.test_pipeline import subscribers


def test_a_stream_past_the_last_event_of_a_running_job_closes_when_the_job_ends(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    job.server.report_values(host_type="server")
    wait_for(lambda: plane.get(job.job_id).server_metrics.fields, 10, "the first report")
    request = pb.StreamMetricsRequest(job_id=job.job_id, after_sequence=1_000)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(lambda: [r.event for r in plane.training.StreamMetrics(request, timeout=20)])
        wait_for(lambda: subscribers(plane) == 1, 10, "the subscription")
        job.server.report_values(fit_start="t0")  # a live event before the position asked for: skipped
        simulation.finish(plane.plane, job)
        assert streaming.result(30) == []  # ended OK with the job, not at its deadline
    assert subscribers(plane) == 0


def test_a_stream_past_the_last_event_of_an_ended_job_is_out_of_range(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    simulation.finish(plane.plane, job)
    last = plane.get(job.job_id)
    events = plane.events(job.job_id)
    assert plane.events(job.job_id, after=events[-1].sequence) == []  # resuming after the terminal event: done
    with pytest.raises(grpc.RpcError) as raised:
        plane.events(job.job_id, after=events[-1].sequence + 1)
    assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert last.id in (raised.value.details() or "")
