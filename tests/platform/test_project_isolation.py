"""Two projects' tokens cannot see or touch each other's jobs, by any RPC of any service.

The table below has one entry per method of every florist service, read from the protos: a method added later
without an entry fails `test_the_table_covers_every_method`. Each entry calls the method on project alpha's job and
says whether the caller saw (or touched) it; alpha's own operator must see it by every method (so the test can
fail), beta's operator by none. Methods that name no job say so, with why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import catalog_service_pb2 as catalog_pb
from florist_grpc.proto.florist.v1 import catalog_service_pb2_grpc as catalog_grpc
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.e2e.sites import RawSession
from tests.helpers import job_message, short_timeouts

SERVICES = (job_pb, training_pb, catalog_pb, agent_pb)
ANN = (("authorization", "Bearer ann-token"),)  # operator of project alpha
BOB = (("authorization", "Bearer bob-token"),)  # operator of project beta
Metadata = tuple[tuple[str, str], ...]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"operator {sha('ann-token')} ann alpha\noperator {sha('bob-token')} bob beta\n"
        f"agent {sha('site-token')} site-a alpha\n"
        f"operator {sha('cat-token')} cat alpha,beta\n"
    )
    # Bookmarks every 0.2 s of silence: a watch says when it has sent everything up to the current revision.
    timeouts = short_timeouts(watch_bookmark_seconds=0.2)
    running = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens, timeouts=timeouts)
    yield running
    running.stop()


@dataclass
class Target:
    """Project alpha's job, ended (so that its streams end), created by ann with request id `same`."""

    plane: ControlPlaneThread
    job_id: str


def every_method() -> list[str]:
    return [
        f"/{service.full_name}/{method.name}"
        for module in SERVICES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def saw(target: Target, call: Callable[[], object]) -> bool:
    """False when the call says the job does not exist (what another project's job must look like)."""
    try:
        call()
    except grpc.RpcError as exc:
        not_found = exc.code() == grpc.StatusCode.NOT_FOUND and exc.details() == f"job {target.job_id!r} not found"
        return not not_found
    return True


def create(t: Target, metadata: Metadata) -> bool:
    """Touching by creating: in alpha explicitly, or repeating ann's request id."""
    jobs = t.plane.jobs
    in_alpha = job_message(["/d/a.pt"])
    in_alpha.project = "alpha"
    try:
        jobs.CreateJob(job_pb.CreateJobRequest(job=in_alpha), timeout=10, metadata=metadata)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
        allowed = False
    else:
        allowed = True
    retry = jobs.CreateJob(
        job_pb.CreateJobRequest(job=job_message(["/d/a.pt"]), request_id="same"), timeout=10, metadata=metadata
    )
    return allowed and retry.job.id == t.job_id


def listed(t: Target, metadata: Metadata) -> bool:
    seen = set()
    for text in ("", "project = alpha", "owner = ann"):
        page = t.plane.jobs.ListJobs(job_pb.ListJobsRequest(filter=text), timeout=10, metadata=metadata)
        seen |= {j.id for j in page.jobs}
    return t.job_id in seen


def watched(t: Target, metadata: Metadata) -> bool:
    """Replays the job's changes (from its creation on), read until a bookmark says the watch is current."""
    current = t.plane.plane.store.current_revision()
    request = job_pb.WatchJobsRequest(after_revision=1, view=job_pb.JOB_VIEW_FULL)
    seen = set()
    for response in t.plane.jobs.WatchJobs(request, timeout=10, metadata=metadata):
        change = response.change
        if change.type == job_pb.JOB_CHANGE_TYPE_BOOKMARK and change.revision >= current:
            return t.job_id in seen
        seen.add(change.job.id)
    raise AssertionError("the watch ended")


def streamed(t: Target, metadata: Metadata, method: str) -> bool:
    stub = t.plane.training
    requests: dict[str, Callable[[], object]] = {
        "StreamMetrics": lambda: list(
            stub.StreamMetrics(training_pb.StreamMetricsRequest(job_id=t.job_id), timeout=10, metadata=metadata)
        ),
        "StreamLogs": lambda: list(
            stub.StreamLogs(training_pb.StreamLogsRequest(job_id=t.job_id), timeout=10, metadata=metadata)
        ),
        "DownloadModel": lambda: list(
            stub.DownloadModel(training_pb.DownloadModelRequest(job_id=t.job_id), timeout=10, metadata=metadata)
        ),
    }
    return saw(t, requests[method])


Call = Callable[[Target, Metadata], "bool | None"]
# Methods that name no job, and why they cannot leak one.
NO_JOB = {
    "/florist.v1.CatalogService/GetCatalog": "the catalog is the same for everyone",
    "/florist.v1.AgentService/ListAgents": "agents, not jobs (filtered by project: test_list_agents_shows_own_sites)",
    "/florist.v1.AgentService/Connect": "agent tokens only: an operator is PERMISSION_DENIED",
}
TABLE: dict[str, Call] = {
    "/florist.v1.JobService/CreateJob": create,
    "/florist.v1.JobService/GetJob": lambda t, md: saw(
        t, lambda: t.plane.jobs.GetJob(job_pb.GetJobRequest(job_id=t.job_id), timeout=10, metadata=md)
    ),
    "/florist.v1.JobService/ListJobs": listed,
    "/florist.v1.JobService/WatchJobs": watched,
    "/florist.v1.TrainingService/StartTraining": lambda t, md: saw(
        t,
        lambda: t.plane.training.StartTraining(
            training_pb.StartTrainingRequest(job_id=t.job_id), timeout=10, metadata=md
        ),
    ),
    "/florist.v1.TrainingService/StopTraining": lambda t, md: saw(
        t,
        lambda: t.plane.training.StopTraining(
            training_pb.StopTrainingRequest(job_id=t.job_id), timeout=10, metadata=md
        ),
    ),
    "/florist.v1.TrainingService/StreamMetrics": lambda t, md: streamed(t, md, "StreamMetrics"),
    "/florist.v1.TrainingService/StreamLogs": lambda t, md: streamed(t, md, "StreamLogs"),
    "/florist.v1.TrainingService/DownloadModel": lambda t, md: streamed(t, md, "DownloadModel"),
    "/florist.v1.CatalogService/GetCatalog": lambda t, md: None,
    "/florist.v1.AgentService/ListAgents": lambda t, md: None,
    "/florist.v1.AgentService/Connect": lambda t, md: None,
    # Last: it deletes the job when allowed.
    "/florist.v1.JobService/DeleteJob": lambda t, md: saw(
        t, lambda: t.plane.jobs.DeleteJob(job_pb.DeleteJobRequest(job_id=t.job_id), timeout=10, metadata=md)
    ),
}


@pytest.fixture
def target(plane: ControlPlaneThread) -> Target:
    job = plane.jobs.CreateJob(
        job_pb.CreateJobRequest(job=job_message(["/d/a.pt"]), request_id="same"), timeout=10, metadata=ANN
    ).job
    assert (job.project, job.owner) == ("alpha", "ann")
    store, now = plane.plane.store, datetime.now(UTC)
    assert store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, now) is not None
    assert store.transition(job.id, {JobState.IN_PROGRESS}, JobState.CANCELLED, now) is not None
    return Target(plane, job.id)


def test_the_table_covers_every_method() -> None:
    assert sorted(TABLE) == sorted(every_method())
    assert set(NO_JOB) <= set(TABLE)


def test_another_projects_operator_neither_sees_nor_touches_the_job_by_any_method(target: Target) -> None:
    outcomes = {method: call(target, BOB) for method, call in TABLE.items()}
    assert {m for m, o in outcomes.items() if o is None} == set(NO_JOB)
    assert {m for m, o in outcomes.items() if o} == set(), "beta saw alpha's job"
    # ...while alpha's own operator sees it by every one of them (the same calls can tell).
    outcomes = {method: call(target, ANN) for method, call in TABLE.items()}
    assert {m for m, o in outcomes.items() if o is False} == set(), "alpha did not see its own job"


def test_methods_without_a_job_answer_both_alike(plane: ControlPlaneThread) -> None:
    catalog = catalog_grpc.CatalogServiceStub(plane.channel)
    agents = agent_grpc.AgentServiceStub(plane.channel)
    for metadata in (ANN, BOB):
        assert catalog.GetCatalog(catalog_pb.GetCatalogRequest(), timeout=10, metadata=metadata).models
        agents.ListAgents(agent_pb.ListAgentsRequest(), timeout=10, metadata=metadata)
        with pytest.raises(grpc.RpcError) as raised:
            list(agents.Connect(iter([agent_pb.ConnectRequest()]), timeout=10, metadata=metadata))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_site_refuses_a_job_outside_its_agent_tokens_projects_before_anything_launches(
    plane: ControlPlaneThread,
) -> None:
    """site-a's token is alpha's: bob's beta job naming it is refused, naming agent and rule, and stays
    NOT_STARTED (nothing was launched: the site was not even asked)."""
    job = job_message(["a.pt"])
    job.clients[0].agent = "site-a"
    created = plane.jobs.CreateJob(job_pb.CreateJobRequest(job=job), timeout=10, metadata=BOB).job
    with pytest.raises(grpc.RpcError) as raised:
        plane.training.StartTraining(training_pb.StartTrainingRequest(job_id=created.id), timeout=10, metadata=BOB)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "agent site-a may not run jobs of project 'beta'" in raised.value.details()
    assert "PROJECTS are alpha" in raised.value.details()
    got = plane.jobs.GetJob(job_pb.GetJobRequest(job_id=created.id), timeout=10, metadata=BOB).job
    assert got.state == job_pb2.JOB_STATE_NOT_STARTED and not got.server_uuid


def test_list_agents_shows_own_sites(plane: ControlPlaneThread) -> None:
    """site-a runs alpha's jobs: ann sees it, bob does not."""
    session = RawSession(plane.channel, "site-a", "site-token")
    try:
        assert session.first().HasField("welcome")
        agents = agent_grpc.AgentServiceStub(plane.channel)
        names = {
            m: [a.name for a in agents.ListAgents(agent_pb.ListAgentsRequest(), metadata=m).agents] for m in (ANN, BOB)
        }
        assert names == {ANN: ["site-a"], BOB: []}
    finally:
        session.close()


def test_a_job_is_owned_by_its_creator_and_a_caller_of_several_projects_names_one(plane: ControlPlaneThread) -> None:
    cat = (("authorization", "Bearer cat-token"),)
    with pytest.raises(grpc.RpcError) as raised:
        plane.jobs.CreateJob(job_pb.CreateJobRequest(job=job_message(["/d/a.pt"])), timeout=10, metadata=cat)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.project: is required: cat belongs to projects alpha,beta" in raised.value.details()
    named = job_message(["/d/a.pt"])
    named.project = "beta"
    job = plane.jobs.CreateJob(job_pb.CreateJobRequest(job=named), timeout=10, metadata=cat).job
    assert (job.project, job.owner) == ("beta", "cat")
    # An owner cannot be claimed: it is whoever created the job.
    claimed = job_message(["/d/a.pt"])
    claimed.owner = "ann"
    assert plane.jobs.CreateJob(job_pb.CreateJobRequest(job=claimed), timeout=10, metadata=BOB).job.owner == "bob"


def test_without_an_auth_file_every_job_is_locals_in_the_default_project(tmp_path: Path) -> None:
    open_plane = ControlPlaneThread.in_dir(tmp_path / "florist")
    try:
        job = open_plane.create(job_message(["/d/a.pt"]))
        assert (job.project, job.owner) == ("default", "local")
    finally:
        open_plane.stop()
