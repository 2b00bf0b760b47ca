"""One test group per interceptor: metrics (Prometheus series) and audit (who did what to which job, and how it
ended), each over real gRPC against a serving control plane; auth has its own tests in test_auth.py."""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from florist_grpc.net import free_port
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.helpers import PlaneThread, job_message


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def measured(tmp_path: Path) -> Iterator[tuple[PlaneThread, int]]:
    port = free_port()
    running = PlaneThread(tmp_path / "florist", metrics_port=port)
    yield running, port
    running.stop()


def test_rpcs_are_counted_by_method_and_code_and_timed(measured: tuple[PlaneThread, int]) -> None:
    plane, port = measured
    created = plane.create(job_message(["/d/c0.pt"]))
    with pytest.raises(grpc.RpcError):
        plane.get("no-such-job")
    plane.get(created.id)
    samples = scrape(port)
    get = "florist.v1.JobService/GetJob"
    assert samples[("florist_rpcs_total", (("code", "OK"), ("method", get)))] == 1
    assert samples[("florist_rpcs_total", (("code", "NOT_FOUND"), ("method", get)))] == 1
    assert samples[("florist_rpcs_total", (("code", "OK"), ("method", "florist.v1.JobService/CreateJob")))] == 1
    assert samples[("florist_rpc_duration_seconds_count", (("method", get),))] == 2
    assert samples[("florist_jobs", (("state", "NOT_STARTED"),))] == 1
    assert samples[("florist_jobs", (("state", "IN_PROGRESS"),))] == 0
    assert samples[("florist_dependency_up", (("dependency", "redis"),))] == 1
    assert samples[("florist_dependency_up", (("dependency", "store"),))] == 1
    assert all(name.startswith("florist_") for name, _ in samples)


def test_streams_events_and_report_lag_are_measured(measured: tuple[PlaneThread, int]) -> None:
    plane, port = measured
    job = create_running(plane.plane, 2)
    play_rounds(job, 1)
    finish(plane.plane, job)
    events = plane.events(job.job_id)
    samples = scrape(port)
    stream = "florist.v1.TrainingService/StreamMetrics"
    assert samples[("florist_rpcs_total", (("code", "OK"), ("method", stream)))] == 1
    assert samples[("florist_active_streams", (("method", stream),))] == 0
    # The job's own state changes go through the store directly; every report change through the follower.
    assert 0 < samples[("florist_events_persisted_total", ())] <= len(events)
    assert samples[("florist_report_to_event_lag_seconds_count", ())] == samples[("florist_events_persisted_total", ())]


def test_denied_calls_are_counted_with_their_code(tmp_path: Path) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(f"viewer {hashlib.sha256(b'look').hexdigest()} alice\n")
    port = free_port()
    plane = PlaneThread(tmp_path / "florist", auth_file=auth, metrics_port=port)
    try:
        with pytest.raises(grpc.RpcError):
            plane.jobs.ListJobs(pb.ListJobsRequest(), timeout=10)
        samples = scrape(port)
        assert (
            samples[("florist_rpcs_total", (("code", "UNAUTHENTICATED"), ("method", "florist.v1.JobService/ListJobs")))]
            == 1
        )
    finally:
        plane.stop()


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "florist_grpc.audit"]


def test_every_mutating_call_is_audited_with_who_what_which_job_and_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(
        f"admin {hashlib.sha256(b'root').hexdigest()} ops\nviewer {hashlib.sha256(b'look').hexdigest()} alice\n"
    )
    plane = PlaneThread(tmp_path / "florist", auth_file=auth)
    caplog.set_level(logging.INFO, logger="florist_grpc.audit")
    try:
        as_ops, as_alice = (("authorization", "Bearer root"),), (("authorization", "Bearer look"),)
        jobs = job_service_pb2_grpc.JobServiceStub(plane.channel)
        created = jobs.CreateJob(pb.CreateJobRequest(job=job_message(["/d"])), metadata=as_ops, timeout=10).job
        jobs.GetJob(pb.GetJobRequest(job_id=created.id), metadata=as_alice, timeout=10)  # reads are not audited
        with pytest.raises(grpc.RpcError):
            jobs.DeleteJob(pb.DeleteJobRequest(job_id=created.id), metadata=as_alice, timeout=10)
        with pytest.raises(grpc.RpcError):
            jobs.DeleteJob(pb.DeleteJobRequest(job_id="gone"), metadata=as_ops, timeout=10)
    finally:
        plane.stop()
    lines = [(r.who, r.method.rsplit("/", 1)[-1], r.job_id, r.code) for r in audit_lines(caplog)]  # type: ignore[attr-defined]
    assert lines == [
        ("ops (admin)", "CreateJob", created.id, "OK"),
        ("alice (viewer)", "DeleteJob", created.id, "PERMISSION_DENIED"),
        ("ops (admin)", "DeleteJob", "gone", "NOT_FOUND"),
    ]
    assert all(r.peer for r in audit_lines(caplog))  # type: ignore[attr-defined]


def test_without_auth_the_caller_is_anonymous(plane: PlaneThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="florist_grpc.audit")
    created = plane.create(job_message(["/d"]))
    [record] = audit_lines(caplog)
    assert record.getMessage() == f"audit anonymous /florist.v1.JobService/CreateJob job={created.id} -> OK"
