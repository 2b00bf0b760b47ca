"""From a report in Redis to every subscriber: in order, exactly once, nothing lost (real Redis, real gRPC)."""

from __future__ import annotations

import concurrent.futures
import threading

import grpc
import pytest
import redis
from google.protobuf import json_format

from florist_grpc.domain.merge_patch import apply
from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import play_rounds
from tests.helpers import job_message, wait_for


def source_key(event: pb.MetricsEvent) -> str:
    if event.source.kind == pb.SOURCE_KIND_CLIENT:
        return f"client{event.source.client_index}"
    return "server" if event.source.kind == pb.SOURCE_KIND_SERVER else "job"


def rebuild(events: list[pb.MetricsEvent]) -> dict[str, dict[str, object]]:
    reports: dict[str, dict[str, object]] = {}
    for event in events:
        key = source_key(event)
        reports[key] = apply(reports.get(key, {}), json_format.MessageToDict(event.patch))
    return reports


def test_patches_rebuild_each_sources_final_report_exactly(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane)
    play_rounds(job, 4)
    simulation.finish(plane.plane, job)
    events = plane.events(job.job_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    rebuilt = rebuild(events)
    stored = plane.get(job.job_id)
    for key, reporter in job.reporters.items():
        assert rebuilt[key] == reporter.report  # exactly what the FL process reported, odd names included
    assert json_format.MessageToDict(stored.server_metrics) == job.server.report
    assert [json_format.MessageToDict(c.metrics) for c in stored.clients] == [c.report for c in job.clients]
    assert rebuilt["job"] == {"state": "FINISHED_SUCCESSFULLY"}


def test_resuming_from_every_after_sequence_yields_exactly_the_suffix(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    play_rounds(job, 2)
    simulation.finish(plane.plane, job)
    everything = plane.events(job.job_id)
    for after in range(len(everything) + 1):
        assert plane.events(job.job_id, after=after) == everything[after:]
    with pytest.raises(grpc.RpcError) as past_the_end:  # the job has ended: nothing will ever come after it
        plane.events(job.job_id, after=len(everything) + 1)
    assert past_the_end.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_a_report_written_before_the_subscription_is_not_lost(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1, attach=False)
    client = redis.Redis.from_url(plane.plane.redis_url)
    client.set(job.server.uuid, '{"host_type": "server", "fit_start": "early"}')  # written, never published
    simulation.attach_simulated(plane.plane, job)
    wait_for(lambda: "fit_start" in plane.get(job.job_id).server_metrics, 10, "the early report")
    assert plane.get(job.job_id).server_metrics["fit_start"] == "early"
    client.close()


def test_a_stream_replays_then_follows_live_and_ends_after_the_terminal_event(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    job.server.report_values(host_type="server")
    wait_for(lambda: plane.plane.store.get_job(job.job_id).last_sequence >= 2, 10, "first report")  # type: ignore[union-attr]
    received: list[pb.MetricsEvent] = []

    def consume() -> None:
        request = pb.StreamMetricsRequest(job_id=job.job_id)
        for response in plane.training.StreamMetrics(request, timeout=60):
            received.append(response.event)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(consume)
        wait_for(lambda: len(received) >= 2, 10, "the replayed events")
        play_rounds(job, 2)
        simulation.finish(plane.plane, job)
        streaming.result(30)
    assert [e.sequence for e in received] == list(range(1, len(received) + 1))
    assert received == plane.events(job.job_id)
    assert received[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY


def test_100_concurrent_subscribers_all_receive_the_identical_sequence(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    results: list[list[int]] = []
    lock = threading.Lock()

    def subscribe() -> None:
        events = plane.events(job.job_id, timeout=120)
        with lock:
            results.append([e.sequence for e in events])

    threads = [threading.Thread(target=subscribe) for _ in range(100)]
    for t in threads:
        t.start()
    # Subscribers register on the event loop: wait until all 100 are listening before anything is reported.
    wait_for(lambda: subscribers(plane) == 100, 30, "100 subscribers")
    play_rounds(job, 3)
    simulation.finish(plane.plane, job)
    for t in threads:
        t.join(60)
    expected = [e.sequence for e in plane.events(job.job_id)]
    assert len(results) == 100
    assert all(r == expected for r in results)
    assert subscribers(plane) == 0  # every finished stream released its subscription


def subscribers(plane: ControlPlaneThread) -> int:
    async def count() -> int:
        return plane.plane.hub.subscriber_count()

    return plane.run(count())


def test_a_cancelled_stream_releases_its_subscription(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    call = plane.training.StreamMetrics(pb.StreamMetricsRequest(job_id=job.job_id), timeout=60)
    next(call)  # the IN_PROGRESS event
    wait_for(lambda: subscribers(plane) == 1, 10, "the subscription")
    call.cancel()
    wait_for(lambda: subscribers(plane) == 0, 10, "the subscription to be released")
    simulation.finish(plane.plane, job)


def test_streaming_an_unknown_job_is_not_found(plane: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.events("nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reports_after_the_terminal_event_are_not_appended(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=1)
    play_rounds(job, 1)
    simulation.finish(plane.plane, job, JobState.CANCELLED)
    count = len(plane.events(job.job_id))
    job.server.report_values(late="too late")
    assert len(plane.events(job.job_id)) == count
    assert plane.events(job.job_id)[-1].job_state == job_pb2.JOB_STATE_CANCELLED


def test_a_stream_is_confirmed_before_its_job_has_any_event(plane: ControlPlaneThread) -> None:
    job = plane.create(job_message(["/d"]))  # NOT_STARTED: no event yet
    call = plane.training.StreamMetrics(pb.StreamMetricsRequest(job_id=job.id), timeout=30)
    assert call.initial_metadata() is not None  # returns once the server confirmed the stream
    assert subscribers(plane) == 1
    call.cancel()
