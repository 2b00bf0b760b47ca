"""Projects bind a browser as they bind a gRPC client: the browser API runs the same servicers, so a token bound to
a project lists, reads, watches and changes only that project's jobs, and another project's job is NOT_FOUND, with
the same status and details on both transports."""

from __future__ import annotations

from collections.abc import Iterator

from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from tests.helpers import job_message
from tests.web.conftest import Dashboard, bearer
from tests.web.test_connect_api import Clients, connect_outcome, grpc_outcome


def create(dashboard: Dashboard, project: str) -> job_pb2.Job:
    message = job_message(["/data/a.pt"])
    message.project = project
    return dashboard.plane.jobs.CreateJob(job_pb.CreateJobRequest(job=message), metadata=bearer("admin")).job


def test_a_project_bound_viewer_reads_only_its_projects_jobs_over_both_transports(dashboard: Dashboard) -> None:
    other, own = create(dashboard, "default"), create(dashboard, "alpha")
    c = Clients(dashboard, "alpha-viewer")
    listing = job_pb.ListJobsRequest()
    over_connect = c.jobs.list_jobs(listing, headers=c.headers)
    assert over_connect == c.grpc_jobs.ListJobs(listing, metadata=c.metadata)
    assert [j.id for j in over_connect.jobs] == [own.id]
    assert c.jobs.get_job(job_pb.GetJobRequest(job_id=own.id), headers=c.headers).job == own
    get_other = job_pb.GetJobRequest(job_id=other.id)
    expected = grpc_outcome(lambda: c.grpc_jobs.GetJob(get_other, metadata=c.metadata))
    assert expected[0] == "NOT_FOUND"  # not PERMISSION_DENIED: another project's job is not there for this caller
    assert connect_outcome(lambda: c.jobs.get_job(get_other, headers=c.headers)) == expected


def test_a_project_bound_operator_changes_only_its_projects_jobs_over_both_transports(dashboard: Dashboard) -> None:
    other = create(dashboard, "default")
    c = Clients(dashboard, "alpha-operator")
    delete_other = job_pb.DeleteJobRequest(job_id=other.id)
    expected = grpc_outcome(lambda: c.grpc_jobs.DeleteJob(delete_other, metadata=c.metadata))
    assert expected[0] == "NOT_FOUND"
    assert connect_outcome(lambda: c.jobs.delete_job(delete_other, headers=c.headers)) == expected
    elsewhere = job_message(["/data/a.pt"])
    elsewhere.project = "default"
    refused = job_pb.CreateJobRequest(job=elsewhere)
    expected = grpc_outcome(lambda: c.grpc_jobs.CreateJob(refused, metadata=c.metadata))
    assert expected[0] not in ("OK", "UNKNOWN", "INTERNAL")
    assert connect_outcome(lambda: c.jobs.create_job(refused, headers=c.headers)) == expected
    created = c.jobs.create_job(job_pb.CreateJobRequest(job=job_message(["/data/a.pt"])), headers=c.headers).job
    assert (created.project, created.owner) == ("alpha", "bob")  # its only project, its token's name


def test_a_browsers_watch_sends_only_its_projects_changes(dashboard: Dashboard) -> None:
    c = Clients(dashboard, "alpha-viewer")
    changes: Iterator[job_pb.WatchJobsResponse] = iter(
        c.jobs.watch_jobs(job_pb.WatchJobsRequest(), headers=c.headers, timeout_ms=30_000)
    )
    try:
        assert next(changes).change.type == job_pb.JOB_CHANGE_TYPE_BOOKMARK  # subscribed
        create(dashboard, "default")
        own = create(dashboard, "alpha")
        change = next(r.change for r in changes if r.change.type != job_pb.JOB_CHANGE_TYPE_BOOKMARK)
        assert (change.type, change.job.id, change.revision) == (job_pb.JOB_CHANGE_TYPE_ADDED, own.id, own.revision)
    finally:
        close = getattr(changes, "close", None)
        if close is not None:
            close()
