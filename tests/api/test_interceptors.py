"""One test group per interceptor: metrics (go-grpc-prometheus's series, florist's own, the endpoint) and audit
(who did what to which job, and how it ended), each over real gRPC against a serving control plane; auth has its own
tests in test_auth.py."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

import florist_grpc
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.helpers import job_message, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def measured(tmp_path: Path) -> Iterator[tuple[ControlPlaneThread, int]]:
    port = free_service_port()
    running = ControlPlaneThread.in_dir(tmp_path / "florist", metrics_port=port)
    yield running, port
    running.stop()


def grpc_labels(kind: str, method: str, **extra: str) -> tuple[tuple[str, str], ...]:
    service, name = method.rsplit("/", 1)
    return tuple(sorted({"grpc_type": kind, "grpc_service": service, "grpc_method": name, **extra}.items()))


def test_unary_calls_are_counted_and_timed_under_go_grpc_prometheus_names(
    measured: tuple[ControlPlaneThread, int],
) -> None:
    plane, port = measured
    created = plane.create(job_message(["/d/c0.pt"]))
    with pytest.raises(grpc.RpcError):
        plane.get("no-such-job")
    plane.get(created.id)
    samples = scrape(port)
    get = "florist.v1.JobService/GetJob"
    assert samples[("grpc_server_started_total", grpc_labels("unary", get))] == 2
    assert samples[("grpc_server_handled_total", grpc_labels("unary", get, grpc_code="OK"))] == 1
    assert samples[("grpc_server_handled_total", grpc_labels("unary", get, grpc_code="NOT_FOUND"))] == 1
    create = "florist.v1.JobService/CreateJob"
    assert samples[("grpc_server_handled_total", grpc_labels("unary", create, grpc_code="OK"))] == 1
    assert samples[("grpc_server_handling_seconds_count", grpc_labels("unary", get))] == 2
    assert samples[("grpc_server_msg_received_total", grpc_labels("unary", get))] == 2
    assert samples[("grpc_server_msg_sent_total", grpc_labels("unary", get))] == 1  # the failed call sent nothing
    assert samples[("florist_jobs", (("state", "NOT_STARTED"),))] == 1
    assert samples[("florist_jobs", (("state", "IN_PROGRESS"),))] == 0
    assert samples[("florist_dependency_up", (("dependency", "redis"),))] == 1
    assert samples[("florist_dependency_up", (("dependency", "store"),))] == 1
    # The standard series replace florist's own RPC counters: one name per fact.
    assert not {name for name, _ in samples if name.startswith("florist_rpc")}


def test_a_server_stream_counts_every_message_it_sends_and_is_not_timed(
    measured: tuple[ControlPlaneThread, int],
) -> None:
    plane, port = measured
    job = create_running(plane.plane, 2)
    play_rounds(job, 1)
    finish(plane.plane, job)
    events = plane.events(job.job_id)
    samples = scrape(port)
    stream = "florist.v1.TrainingService/StreamMetrics"
    assert samples[("grpc_server_started_total", grpc_labels("server_stream", stream))] == 1
    assert samples[("grpc_server_handled_total", grpc_labels("server_stream", stream, grpc_code="OK"))] == 1
    assert samples[("grpc_server_msg_received_total", grpc_labels("server_stream", stream))] == 1
    assert samples[("grpc_server_msg_sent_total", grpc_labels("server_stream", stream))] == len(events)
    assert ("grpc_server_handling_seconds_count", grpc_labels("server_stream", stream)) not in samples
    assert samples[("florist_active_streams", (("method", stream),))] == 0
    # The job's own state changes go through the store directly; every report change through the follower.
    assert 0 < samples[("florist_events_persisted_total", ())] <= len(events)
    assert samples[("florist_report_to_event_lag_seconds_count", ())] == samples[("florist_events_persisted_total", ())]


def test_every_event_of_a_started_job_is_counted_its_in_progress_event_too(
    measured: tuple[ControlPlaneThread, int], demo_data: list[str]
) -> None:
    plane, port = measured
    job = plane.create(job_message(demo_data, rounds=50))
    plane.start(job.id)  # the real StartTraining: its IN_PROGRESS event goes through the event publisher
    plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job.id), timeout=60)
    events = plane.events(job.id)
    assert events[0].job_state == job_pb2.JOB_STATE_IN_PROGRESS
    wait_for(
        lambda: scrape(port)[("florist_events_persisted_total", ())] == len(events),
        10,
        f"florist_events_persisted_total to count the job's {len(events)} events",
    )


def test_standard_services_and_bidirectional_streams_are_counted_too(measured: tuple[ControlPlaneThread, int]) -> None:
    """Reflection is a bidirectional stream whose servicer yields; health's Watch writes with context.write()."""
    plane, port = measured
    reflect = reflection_pb2_grpc.ServerReflectionStub(plane.channel)
    asked = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(list_services=""),
    ]
    assert len(list(reflect.ServerReflectionInfo(iter(asked), timeout=10))) == 2
    watch = health_pb2_grpc.HealthStub(plane.channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    info = "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    watched = "grpc.health.v1.Health/Watch"
    cancelled = ("grpc_server_handled_total", grpc_labels("server_stream", watched, grpc_code="CANCELLED"))
    samples = wait_for(lambda: (now := scrape(port)).get(cancelled) and now, message="the cancelled Watch to end")
    assert samples[("grpc_server_handled_total", grpc_labels("bidi_stream", info, grpc_code="OK"))] == 1
    assert samples[("grpc_server_msg_received_total", grpc_labels("bidi_stream", info))] == 2
    assert samples[("grpc_server_msg_sent_total", grpc_labels("bidi_stream", info))] == 2
    assert samples[("grpc_server_msg_sent_total", grpc_labels("server_stream", watched))] == 1


def test_build_info_and_process_collectors_are_exported(measured: tuple[ControlPlaneThread, int]) -> None:
    _, port = measured
    samples = scrape(port)
    [build] = [labels for name, labels in samples if name == "florist_build_info"]
    assert dict(build)["version"] == florist_grpc.__version__
    assert samples[("florist_build_info", build)] == 1
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names


@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics/extra", "/favicon.ico"])
def test_the_metrics_endpoint_answers_on_metrics_only(measured: tuple[ControlPlaneThread, int], path: str) -> None:
    _, port = measured
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
    assert refused.value.code == 404
    assert scrape(port)  # /metrics itself answers


def test_denied_calls_are_counted_with_their_code(tmp_path: Path) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(f"viewer {hashlib.sha256(b'look').hexdigest()} alice\n")
    port = free_service_port()
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=auth, metrics_port=port)
    try:
        with pytest.raises(grpc.RpcError):
            plane.jobs.ListJobs(pb.ListJobsRequest(), timeout=10)
        denied = grpc_labels("unary", "florist.v1.JobService/ListJobs", grpc_code="UNAUTHENTICATED")
        # The caller can see its error before the server's interceptor has counted the call: wait for the count.
        counted = ("grpc_server_handled_total", denied)
        samples = wait_for(lambda: (now := scrape(port)).get(counted) and now, message="the denied call counted")
        assert samples[counted] == 1
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
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=auth)
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
    records = audit_lines(caplog)
    lines = [(r.who, r.role, r.method.rsplit("/", 1)[-1], r.job_id, r.code) for r in records]  # type: ignore[attr-defined]
    assert lines == [
        ("ops", "admin", "CreateJob", created.id, "OK"),
        ("alice", "viewer", "DeleteJob", created.id, "PERMISSION_DENIED"),
        ("ops", "admin", "DeleteJob", "gone", "NOT_FOUND"),
    ]
    assert records[0].getMessage() == f"audit ops (admin) /florist.v1.JobService/CreateJob job={created.id} -> OK"
    assert all(r.peer for r in audit_lines(caplog))  # type: ignore[attr-defined]


def test_without_auth_the_caller_is_anonymous(plane: ControlPlaneThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="florist_grpc.audit")
    created = plane.create(job_message(["/d"]))
    [record] = audit_lines(caplog)
    assert record.getMessage() == f"audit anonymous /florist.v1.JobService/CreateJob job={created.id} -> OK"
    assert (record.who, record.role) == ("anonymous", "none")  # type: ignore[attr-defined]
