"""CreateJob validate_only (AIP-163), ListJobs filter (AIP-160 subset) and view, over real gRPC."""

from __future__ import annotations

import grpc
import pytest

from florist_grpc.domain.model import JobState
from florist_grpc.jobs import listing
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.api.test_job_service import violations
from tests.helpers import job_message


def listed(plane: ControlPlaneThread, **request: object) -> pb.ListJobsResponse:
    return plane.jobs.ListJobs(pb.ListJobsRequest(**request), timeout=30)  # type: ignore[arg-type]


def test_validate_only_returns_the_job_as_it_would_be_and_stores_nothing(plane: ControlPlaneThread) -> None:
    request = pb.CreateJobRequest(job=job_message(["/d/c0.pt"]), validate_only=True, request_id="r1")
    dry = plane.jobs.CreateJob(request, timeout=30).job
    assert dry.id == "" and dry.state == job_pb2.JOB_STATE_NOT_STARTED and dry.model == "MLP"
    assert dry.HasField("create_time")
    assert list(listed(plane).jobs) == []
    # The request id was not used up: the real create with it stores a job.
    real = plane.jobs.CreateJob(pb.CreateJobRequest(job=job_message(["/d/c0.pt"]), request_id="r1"), timeout=30).job
    assert real.id and [j.id for j in listed(plane).jobs] == [real.id]


def test_validate_only_reports_the_same_violations(plane: ControlPlaneThread) -> None:
    request = pb.CreateJobRequest(job=job_message([""], rounds=0), validate_only=True)
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.CreateJob(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.clients[0].data_path" in violations(raised.value)


def test_filter_on_states_and_model(plane: ControlPlaneThread) -> None:
    waiting = plane.create(job_message(["/d/c0.pt"]))
    running = create_running(plane.plane, 1)
    cancelled = create_running(plane.plane, 1)
    finish(plane.plane, cancelled, state=JobState.CANCELLED)

    def ids(text: str) -> set[str]:
        return {j.id for j in listed(plane, filter=text).jobs}

    assert ids("state = IN_PROGRESS") == {running.job_id}
    assert ids("state = JOB_STATE_FINISHED_WITH_ERROR OR state = CANCELLED") == {cancelled.job_id}
    assert ids('model = "MLP"') == {waiting.id, running.job_id, cancelled.job_id}
    assert ids('model = "MNIST_CNN"') == set()
    assert ids("strategy = FEDAVG AND state = NOT_STARTED") == {waiting.id}


def test_a_filter_pages_through_a_scan_with_tokens_bound_to_it(
    plane: ControlPlaneThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "SCAN_BATCH", 3)  # several store round trips per page
    made = [
        plane.create(job_message(["/d/c0.pt"], strategy="FEDMEDIAN" if i % 3 == 0 else "FEDAVG")).id for i in range(10)
    ]
    wanted = [job_id for i, job_id in enumerate(made) if i % 3 == 0][::-1]
    first = listed(plane, filter="strategy = FEDMEDIAN", page_size=2)
    second = listed(plane, filter="strategy = FEDMEDIAN", page_size=2, page_token=first.next_page_token)
    assert [j.id for j in first.jobs] + [j.id for j in second.jobs] == wanted
    assert second.next_page_token == ""
    with pytest.raises(grpc.RpcError) as raised:
        listed(plane, filter="strategy = FEDAVG", page_size=2, page_token=first.next_page_token)
    assert violations(raised.value) == {"page_token": "was issued for a different filter"}


@pytest.mark.parametrize("text", ["creator = me", "state = RUNNING", "state =", "model ~ MLP"])
def test_an_unsupported_filter_is_invalid_argument_on_filter(plane: ControlPlaneThread, text: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        listed(plane, filter=text)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(raised.value)) == {"filter"}


def test_basic_view_leaves_out_metrics_full_and_unspecified_keep_them(plane: ControlPlaneThread) -> None:
    job = create_running(plane.plane, 2)
    play_rounds(job, 1)
    finish(plane.plane, job)
    basic = listed(plane, view=pb.JOB_VIEW_BASIC).jobs[0]
    assert not basic.HasField("server_metrics") or not basic.server_metrics.fields
    assert all(not c.metrics.fields for c in basic.clients)
    assert basic.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY and len(basic.clients) == 2
    for view in (pb.JOB_VIEW_FULL, pb.JOB_VIEW_UNSPECIFIED):
        full = listed(plane, view=view).jobs[0]
        assert "rounds" in full.server_metrics.fields and all("rounds" in c.metrics.fields for c in full.clients)
