"""The browser API (`serve --http-port`, Connect protocol and gRPC-Web) answers every call as the gRPC port does:
the same results, the same status codes, messages and google.rpc details byte for byte, the same auth."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
import pytest
from connectrpc.client import ResponseMetadata
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from grpc_status import rpc_status

from florist_grpc.api.agent_service import AgentServicer
from florist_grpc.api.connect_services import AgentServiceAdapter
from florist_grpc.proto.florist.v1 import (
    agent_service_connect,
    agent_service_pb2,
    agent_service_pb2_grpc,
    catalog_service_connect,
    catalog_service_pb2,
    catalog_service_pb2_grpc,
)
from florist_grpc.proto.florist.v1 import job_service_connect as job_connect
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_connect as training_connect
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing import simulation
from tests.helpers import job_message
from tests.web.conftest import Dashboard, bearer, headers

Outcome = tuple[str, str, list[tuple[str, bytes]]]


def grpc_outcome(call: Callable[[], Any]) -> Outcome:
    try:
        call()
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        details = [(d.type_url.removeprefix("type.googleapis.com/"), d.value) for d in status.details] if status else []
        return exc.code().name, exc.details() or "", details
    return "OK", "", []


def connect_outcome(call: Callable[[], Any]) -> Outcome:
    try:
        call()
    except ConnectError as exc:
        name = "CANCELLED" if exc.code is Code.CANCELED else exc.code.name
        return name, exc.message, [(d.type_name, d.message_bytes) for d in exc.details]
    return "OK", "", []


class Clients:
    """Both transports' clients of every service, with one role's token."""

    def __init__(self, dashboard: Dashboard, role: str, protocol: ProtocolType = ProtocolType.CONNECT) -> None:
        url, channel = dashboard.url, dashboard.plane.channel
        self.metadata, self.headers = bearer(role), headers(role)
        self.jobs = job_connect.JobServiceClientSync(url, protocol=protocol)
        self.training = training_connect.TrainingServiceClientSync(url, protocol=protocol)
        self.catalog = catalog_service_connect.CatalogServiceClientSync(url, protocol=protocol)
        self.agents = agent_service_connect.AgentServiceClientSync(url, protocol=protocol)
        self.grpc_catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        self.grpc_agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        self.grpc_jobs, self.grpc_training = dashboard.plane.jobs, dashboard.plane.training


# (name, gRPC call, Connect call): every RPC of the browser API, each ending in an error a caller can cause.
def failing_calls(c: Clients) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    m, h = c.metadata, c.headers
    bad_job = job_pb.CreateJobRequest(job=job_message(["relative/path.pt"], rounds=0, strategy="NOPE"))
    unknown = "0" * 32
    return [
        ("GetJob", lambda: c.grpc_jobs.GetJob(job_pb.GetJobRequest(job_id=unknown), metadata=m),
         lambda: c.jobs.get_job(job_pb.GetJobRequest(job_id=unknown), headers=h)),
        ("CreateJob", lambda: c.grpc_jobs.CreateJob(bad_job, metadata=m),
         lambda: c.jobs.create_job(bad_job, headers=h)),
        ("ListJobs", lambda: c.grpc_jobs.ListJobs(job_pb.ListJobsRequest(page_token="garbage"), metadata=m),
         lambda: c.jobs.list_jobs(job_pb.ListJobsRequest(page_token="garbage"), headers=h)),
        ("DeleteJob", lambda: c.grpc_jobs.DeleteJob(job_pb.DeleteJobRequest(job_id=unknown), metadata=m),
         lambda: c.jobs.delete_job(job_pb.DeleteJobRequest(job_id=unknown), headers=h)),
        ("StartTraining", lambda: c.grpc_training.StartTraining(training_pb.StartTrainingRequest(), metadata=m),
         lambda: c.training.start_training(training_pb.StartTrainingRequest(), headers=h)),
        ("StopTraining",
         lambda: c.grpc_training.StopTraining(training_pb.StopTrainingRequest(job_id=unknown), metadata=m),
         lambda: c.training.stop_training(training_pb.StopTrainingRequest(job_id=unknown), headers=h)),
        ("StreamMetrics",
         lambda: list(c.grpc_training.StreamMetrics(training_pb.StreamMetricsRequest(job_id=unknown), metadata=m)),
         lambda: list(c.training.stream_metrics(training_pb.StreamMetricsRequest(job_id=unknown), headers=h))),
        ("StreamLogs",
         lambda: list(c.grpc_training.StreamLogs(training_pb.StreamLogsRequest(job_id=unknown), metadata=m)),
         lambda: list(c.training.stream_logs(training_pb.StreamLogsRequest(job_id=unknown), headers=h))),
        ("DownloadModel",
         lambda: list(c.grpc_training.DownloadModel(training_pb.DownloadModelRequest(job_id=unknown), metadata=m)),
         lambda: list(c.training.download_model(training_pb.DownloadModelRequest(job_id=unknown), headers=h))),
    ]  # fmt: skip


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB])
def test_every_error_reaches_a_browser_as_it_reaches_a_grpc_client(
    dashboard: Dashboard, protocol: ProtocolType
) -> None:
    clients = Clients(dashboard, "admin", protocol)
    for name, over_grpc, over_connect in failing_calls(clients):
        expected = grpc_outcome(over_grpc)
        assert expected[0] not in ("OK", "UNKNOWN", "INTERNAL"), name
        assert expected[2], f"{name}: a status without details"
        assert connect_outcome(over_connect) == expected, name


def test_reads_answer_over_connect_as_over_grpc(dashboard: Dashboard) -> None:
    c = Clients(dashboard, "viewer")
    job = dashboard.plane.jobs.CreateJob(
        job_pb.CreateJobRequest(job=job_message(["/data/a.pt"])), metadata=bearer("admin")
    ).job
    request = job_pb.ListJobsRequest(view=job_pb.JOB_VIEW_BASIC)
    assert c.jobs.list_jobs(request, headers=c.headers) == c.grpc_jobs.ListJobs(request, metadata=c.metadata)
    get = job_pb.GetJobRequest(job_id=job.id)
    assert c.jobs.get_job(get, headers=c.headers).job == job
    catalog = catalog_service_pb2.GetCatalogRequest()
    assert c.catalog.get_catalog(catalog, headers=c.headers) == c.grpc_catalog.GetCatalog(catalog, metadata=c.metadata)
    agents = agent_service_pb2.ListAgentsRequest()
    assert c.agents.list_agents(agents, headers=c.headers) == c.grpc_agents.ListAgents(agents, metadata=c.metadata)


def test_a_browser_streams_a_jobs_events_as_grpc_does(dashboard: Dashboard) -> None:
    job = simulation.create_running(dashboard.plane.plane, n_clients=2)
    simulation.play_rounds(job, 2)
    simulation.finish(dashboard.plane.plane, job)
    c = Clients(dashboard, "viewer")
    request = training_pb.StreamMetricsRequest(job_id=job.job_id)
    over_grpc = [r.event for r in c.grpc_training.StreamMetrics(request, metadata=c.metadata, timeout=30)]
    over_connect = [r.event for r in c.training.stream_metrics(request, headers=c.headers, timeout_ms=30_000)]
    assert len(over_grpc) > 4
    assert over_connect == over_grpc


def test_a_viewer_may_not_mutate_over_the_browser_api(dashboard: Dashboard) -> None:
    c = Clients(dashboard, "viewer")
    create = job_pb.CreateJobRequest(job=job_message(["/data/a.pt"]))
    start = training_pb.StartTrainingRequest(job_id="0" * 32)
    for over_grpc, over_connect in [
        (lambda: c.grpc_jobs.CreateJob(create, metadata=c.metadata),
         lambda: c.jobs.create_job(create, headers=c.headers)),
        (lambda: c.grpc_training.StartTraining(start, metadata=c.metadata),
         lambda: c.training.start_training(start, headers=c.headers)),
    ]:  # fmt: skip
        expected = grpc_outcome(over_grpc)
        assert expected[0] == "PERMISSION_DENIED"
        assert connect_outcome(over_connect) == expected
    assert c.jobs.list_jobs(job_pb.ListJobsRequest(), headers=c.headers).jobs == []  # nothing was created


@pytest.mark.parametrize("token_headers", [{}, {"authorization": "Bearer wrong"}, headers("agent")])
def test_a_call_without_a_valid_token_is_refused(dashboard: Dashboard, token_headers: dict[str, str]) -> None:
    clients = Clients(dashboard, "viewer")
    outcome = connect_outcome(lambda: clients.jobs.list_jobs(job_pb.ListJobsRequest(), headers=token_headers))
    assert outcome[0] in ("UNAUTHENTICATED", "PERMISSION_DENIED")
    metadata = tuple(token_headers.items())
    assert outcome == grpc_outcome(lambda: clients.grpc_jobs.ListJobs(job_pb.ListJobsRequest(), metadata=metadata))


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_responses_name_the_callers_role(dashboard: Dashboard, role: str) -> None:
    clients = Clients(dashboard, role)
    with ResponseMetadata() as response:
        clients.catalog.get_catalog(catalog_service_pb2.GetCatalogRequest(), headers=clients.headers)
    assert response.headers.get("florist-caller-role") == role


def test_a_browser_mutation_is_audited(dashboard: Dashboard, caplog: pytest.LogCaptureFixture) -> None:
    clients = Clients(dashboard, "admin")
    with caplog.at_level(logging.INFO, logger="florist_grpc.audit"):
        connect_outcome(
            lambda: clients.jobs.delete_job(job_pb.DeleteJobRequest(job_id="f" * 32), headers=clients.headers)
        )
    [line] = [r for r in caplog.records if r.name == "florist_grpc.audit"]
    assert (line.who, line.role, line.method, line.job_id, line.code) == (  # type: ignore[attr-defined]
        "ops",
        "admin",
        "/florist.v1.JobService/DeleteJob",
        "f" * 32,
        "NOT_FOUND",
    )
    assert line.peer.startswith("ipv4:127.0.0.1:")  # type: ignore[attr-defined]


def test_json_requests_work_as_curl_sends_them(dashboard: Dashboard) -> None:
    request = urllib.request.Request(
        f"{dashboard.url}/florist.v1.CatalogService/GetCatalog",
        data=b"{}",
        headers={"content-type": "application/json", **headers("viewer")},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b'"MLP"' in response.read()


def get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_without_an_auth_file_only_loopback_names_reach_the_dashboard(open_dashboard: Dashboard) -> None:
    url = open_dashboard.url + "/"
    port = url.rsplit(":", 1)[1].rstrip("/")
    assert get(url) == 200
    assert get(url, f"localhost:{port}") == 200
    assert get(url, f"[::1]:{port}") == 200
    assert get(url, "127.0.0.2") == 200
    # A page whose DNS name was rebound to 127.0.0.1 sends that name.
    assert get(url, f"attacker.example:{port}") == 403


def test_with_an_auth_file_any_host_name_reaches_the_page(dashboard: Dashboard) -> None:
    assert get(dashboard.url + "/", "dashboard.example.org") == 200


def test_a_missing_file_is_a_plain_404(dashboard: Dashboard) -> None:
    assert get(dashboard.url + "/no-such-file.js") == 404
    assert get(dashboard.url + "/florist.v1.NoSuchService/Method") == 404


@pytest.mark.parametrize("method", ["connect", "tunnel"])
def test_an_agents_streams_stay_on_the_grpc_port(method: str) -> None:
    # Bidirectional streams need HTTP/2: the dashboard's port answers them UNIMPLEMENTED, naming where to go.
    adapter = AgentServiceAdapter(cast(AgentServicer, None))

    async def nothing() -> AsyncIterator[Any]:
        return
        yield

    async def call() -> None:
        async for _ in getattr(adapter, method)(nothing(), None):
            pass

    with pytest.raises(ConnectError) as raised:
        asyncio.run(call())
    assert raised.value.code is Code.UNIMPLEMENTED
    assert "the gRPC port, not the dashboard's" in raised.value.message
