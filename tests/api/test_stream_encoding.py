"""StreamMetrics encodes each event once, however many streams send it; clients still get typed responses."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from florist_grpc.api import convert
from florist_grpc.domain.model import SERVER_SOURCE, JobState, MetricsEvent
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.store.base import ReportChange
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for
from tests.metrics.test_pipeline import subscribers

STREAMS = 20
LIVE_EVENTS = 10


def test_each_event_is_encoded_once_for_every_stream(
    plane: ControlPlaneThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    lock = threading.Lock()
    to_proto = convert.event_to_proto

    def counting(event: MetricsEvent) -> pb.MetricsEvent:
        with lock:
            encoded.append(event.sequence)
        return to_proto(event)

    monkeypatch.setattr(convert, "event_to_proto", counting)
    job = simulation.create_running(plane.plane, n_clients=1, attach=False)
    stub = pb_grpc.TrainingServiceStub(plane.channel)
    calls = [stub.StreamMetrics(pb.StreamMetricsRequest(job_id=job.job_id), timeout=60) for _ in range(STREAMS)]
    assert all(next(call).event.sequence == 1 for call in calls)  # replayed from one shared page
    wait_for(lambda: subscribers(plane) == STREAMS, 10, "every subscription")
    report: dict[str, object] = {}
    for n in range(LIVE_EVENTS):
        change = ReportChange(job.job_id, SERVER_SOURCE, report, {"n": n}, datetime.now(UTC))
        event = plane.plane.store.append_report_changes([change])[0]
        assert isinstance(event, MetricsEvent)
        plane.plane.hub.publish_threadsafe([event])
        report = change.report
    ended = plane.plane.store.transition(job.job_id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
    assert ended is not None
    plane.plane.hub.publish_threadsafe([ended])
    with ThreadPoolExecutor(STREAMS) as pool:
        received = list(pool.map(lambda call: [r.event for r in call], calls))
    last = LIVE_EVENTS + 2
    assert all([e.sequence for e in events] == list(range(2, last + 1)) for events in received)
    assert all(events[-1].job_state == job_pb2.JOB_STATE_CANCELLED for events in received)
    assert sorted(encoded) == list(range(1, last + 1))  # once each, not once per stream
