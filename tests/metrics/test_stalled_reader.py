"""A reader that stops reading holds back no one: not the live subscribers of its job, not the other replays."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.domain.model import SERVER_SOURCE, JobState, MetricsEvent
from florist_grpc.metrics.history import SharedHistory
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.replay_gate import ReplayGate
from florist_grpc.metrics.stream import MetricsFeed, job_frames
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing import simulation
from florist_grpc.testing.history import create_finished
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for
from tests.metrics.test_pipeline import subscribers

EVENTS = 300


def test_a_stalled_live_subscriber_does_not_delay_the_others(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1, attach=False)
    request = pb.StreamMetricsRequest(job_id=job.job_id)
    stalled = plane.training.StreamMetrics(request, timeout=60)
    assert next(stalled).event.sequence == 1  # then it stops reading
    fast = plane.training.StreamMetrics(request, timeout=60)
    assert next(fast).event.sequence == 1
    wait_for(lambda: subscribers(plane) == 2, 10, "both subscriptions")
    # Events of 64 KiB: more than the stalled stream's flow-control window and its queue in the hub can hold.
    report: dict[str, object] = {}
    began = time.monotonic()
    for n in range(EVENTS):
        change = ReportChange(job.job_id, SERVER_SOURCE, report, {"n": n, "blob": f"{n:x}" * 16384}, datetime.now(UTC))
        event = plane.plane.store.append_report_changes([change])[0]
        assert isinstance(event, MetricsEvent)
        plane.plane.hub.publish_threadsafe([event])
        report = change.report
    ended = plane.plane.store.transition(job.job_id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
    assert ended is not None
    plane.plane.hub.publish_threadsafe([ended])
    fast_sequences = [r.event.sequence for r in fast]
    fast_seconds = time.monotonic() - began
    assert fast_sequences == list(range(2, EVENTS + 3))  # everything, in order, while the other reads nothing
    assert fast_seconds < 30
    assert [r.event.sequence for r in stalled] == list(range(2, EVENTS + 3))  # and it misses nothing either


def test_a_stalled_replay_gives_way_to_the_next(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    job_id = create_finished(store, 1000)

    async def scenario() -> tuple[list[int], list[int]]:
        gate = ReplayGate(slots=1, stall_seconds=0.1)
        feed = MetricsFeed(SharedHistory(store), EventHub(asyncio.get_running_loop()), gate)
        stalled = job_frames(feed, job_id, 0)
        first = [(await anext(stalled)).sequence for _ in range(3)]  # holds the only slot, then stops reading
        rest = await asyncio.wait_for(_sequences(feed, job_id), 10)
        first += [frame.sequence async for frame in stalled]  # it moves again, and resumes where it stopped
        return first, rest

    first, rest = asyncio.run(scenario())
    assert first == rest == list(range(1, 1001))


async def _sequences(feed: MetricsFeed, job_id: str) -> list[int]:
    return [frame.sequence async for frame in job_frames(feed, job_id, 0)]
