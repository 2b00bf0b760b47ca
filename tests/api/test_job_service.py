"""JobService and CatalogService over a real gRPC connection to a serving control plane."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from florist_grpc.domain.catalog import MODELS, OPTIMIZERS, STRATEGIES
from florist_grpc.domain.model import JobState
from florist_grpc.net import ephemeral_range
from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc, job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message


def violations(error: grpc.RpcError) -> dict[str, str]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if not detail.Unpack(bad):
            continue  # the ErrorInfo
        found.update({v.field: v.description for v in bad.field_violations})
    return found


def test_create_job_stores_a_not_started_job_with_a_picked_server_address(plane: ControlPlaneThread) -> None:
    created = plane.create(job_message(["/d/c0.pt", "/d/c1.pt"]))
    assert created.id and created.state == job_pb2.JOB_STATE_NOT_STARTED
    assert created.server_address.startswith("127.0.0.1:")
    # Below the ephemeral range: no outgoing connection can take it while the FL server is still starting.
    assert int(created.server_address.rsplit(":", 1)[1]) < ephemeral_range()[0]
    assert dict(created.server_config) == {"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1}
    assert plane.get(created.id) == created


def test_create_job_reports_every_bad_field_in_one_invalid_argument(plane: ControlPlaneThread) -> None:
    job = job_message(["", "/d"], rounds=0)
    job.model, job.client_type, job.server_address = "NOPE", "FEDPROX", "nohost"
    job.clients[1].agent, job.clients[1].device = "no such/agent", "tpu"
    # A Redis the control plane does not own is refused too (its listeners would otherwise follow it).
    job.redis_address = "10.1.2.3:6379"
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(job)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {
        "job.model",
        "job.client_type",
        "job.server_config.n_server_rounds",
        "job.server_address",
        "job.redis_address",
        "job.clients[0].data_path",
        "job.clients[1].agent",
        "job.clients[1].device",
    }


def test_a_relative_data_path_sent_over_grpc_for_a_local_client_is_invalid_argument(plane: ControlPlaneThread) -> None:
    job = job_message(["/d/c0.pt", "c1.pt"])
    job.clients[0].agent = "site-a"  # an agent's client: relative to that agent's data root, unchanged
    job.clients[0].data_path = "c0.pt"
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(job)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {"job.clients[1].data_path"}


def test_create_job_without_a_job_is_invalid(plane: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.CreateJob(pb.CreateJobRequest(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job" in violations(raised.value)


def test_a_retried_request_id_returns_the_same_job(plane: ControlPlaneThread) -> None:
    first = plane.create(job_message(["/d"]), request_id="retry-1")
    second = plane.create(job_message(["/other"]), request_id="retry-1")
    assert second.id == first.id
    listed = plane.jobs.ListJobs(pb.ListJobsRequest(), timeout=10).jobs
    assert [j.id for j in listed] == [first.id]


def test_get_job_of_an_unknown_id_is_not_found(plane: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.get("does-not-exist")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_jobs_pages_newest_first_stably_while_jobs_are_added(plane: ControlPlaneThread) -> None:
    ids = [plane.create(job_message(["/d"])).id for _ in range(5)]
    first = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=2), timeout=10)
    assert [j.id for j in first.jobs] == ids[::-1][:2] and first.next_page_token
    plane.create(job_message(["/d"]))  # a newer job must not shift the following pages
    second = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=2, page_token=first.next_page_token), timeout=10)
    third = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=2, page_token=second.next_page_token), timeout=10)
    assert [j.id for j in [*second.jobs, *third.jobs]] == ids[::-1][2:]
    assert third.next_page_token == ""


def test_list_jobs_filters_by_state(plane: ControlPlaneThread) -> None:
    idle = plane.create(job_message(["/d"]))
    busy = plane.create(job_message(["/d"]))
    plane.plane.store.transition(busy.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
    listed = plane.jobs.ListJobs(pb.ListJobsRequest(state=job_pb2.JOB_STATE_IN_PROGRESS), timeout=10)
    assert [j.id for j in listed.jobs] == [busy.id]
    listed = plane.jobs.ListJobs(pb.ListJobsRequest(state=job_pb2.JOB_STATE_NOT_STARTED), timeout=10)
    assert [j.id for j in listed.jobs] == [idle.id]


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [({"page_size": -1}, "page_size"), ({"page_token": "garbage!"}, "page_token"), ({"state": 42}, "state")],
)
def test_list_jobs_rejects_bad_paging(plane: ControlPlaneThread, request_kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.ListJobs(pb.ListJobsRequest(**request_kwargs), timeout=10)  # type: ignore[arg-type]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(raised.value)


def test_a_page_token_is_bound_to_its_state_filter(plane: ControlPlaneThread) -> None:
    for _ in range(3):
        plane.create(job_message(["/d"]))
    token = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=1), timeout=10).next_page_token
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.ListJobs(
            pb.ListJobsRequest(page_size=1, page_token=token, state=job_pb2.JOB_STATE_CANCELLED), timeout=10
        )
    assert "page_token" in violations(raised.value)


def test_delete_job_is_refused_while_in_progress_and_removes_the_job_otherwise(plane: ControlPlaneThread) -> None:
    job = plane.create(job_message(["/d"]))
    store = plane.plane.store
    store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.DeleteJob(pb.DeleteJobRequest(job_id=job.id), timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    store.transition(job.id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
    plane.jobs.DeleteJob(pb.DeleteJobRequest(job_id=job.id), timeout=10)
    assert store.read_events(job.id, 0) == []
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.DeleteJob(pb.DeleteJobRequest(job_id=job.id), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_catalog_lists_models_strategies_with_schemas_and_optimizers(plane: ControlPlaneThread) -> None:
    stub = catalog_service_pb2_grpc.CatalogServiceStub(plane.channel)
    catalog = stub.GetCatalog(catalog_service_pb2.GetCatalogRequest(), timeout=10)
    assert {m.name for m in catalog.models} == set(MODELS) >= {"MLP", "MNIST_CNN"}
    assert {o.name for o in catalog.optimizers} == set(OPTIMIZERS) >= {"SGD", "ADAM", "ADAMW"}
    strategies = {s.name: s for s in catalog.strategies}
    assert set(strategies) == set(STRATEGIES)
    fedprox = strategies["FEDPROX"]
    assert list(fedprox.client_types) == ["FEDPROX"]
    assert "proximal_weight_patience" in fedprox.config_schema["required"]
    assert fedprox.config_schema["additionalProperties"] is False
    cnn = next(m for m in catalog.models if m.name == "MNIST_CNN")
    assert list(cnn.input_shape) == [1, 28, 28] and cnn.num_classes == 10
    models = {m.name: m for m in catalog.models}
    assert {m.source for m in catalog.models} == {"builtin"}
    # Sized by the data: no fixed shape, a schema for the model's own settings.
    assert list(models["MLP"].input_shape) == [] and models["MLP"].num_classes == 0
    assert set(models["MLP"].config_schema["properties"]) == {"hidden_sizes", "dropout"}
    assert "channels" in models["CNN"].config_schema["properties"]
