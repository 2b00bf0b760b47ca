"""What a watch sends of a change (jobs/watch_filter.py): a table of cases."""

from __future__ import annotations

import pytest

from florist_grpc.domain.model import ChangeType, JobChange, JobState
from florist_grpc.domain.projects import EVERY_PROJECT, Caller, Projects
from florist_grpc.jobs import job_filter
from tests.store.test_store_contract import new_job

ALPHA = Caller("ann", "viewer", Projects.of(["alpha"]))
EVERYONE = Caller("root", "admin", EVERY_PROJECT)
A, M, D = ChangeType.ADDED, ChangeType.MODIFIED, ChangeType.DELETED
NS, IP, OK = JobState.NOT_STARTED, JobState.IN_PROGRESS, JobState.FINISHED_SUCCESSFULLY


def change(type_: ChangeType, before: JobState, after: JobState, project: str = "alpha") -> JobChange:
    job = new_job("j")
    job.project, job.state = project, after
    return JobChange(7, type_, job, before)


@pytest.mark.parametrize(
    ("filter_text", "caller", "given", "sent"),
    [
        ("", ALPHA, change(A, JobState.UNSPECIFIED, NS), A),
        ("", ALPHA, change(M, NS, IP), M),
        ("", ALPHA, change(D, OK, OK), D),
        ("", ALPHA, change(M, NS, IP, project="beta"), None),  # another project's job: never sent
        ("", EVERYONE, change(M, NS, IP, project="beta"), M),
        ("project = alpha", EVERYONE, change(M, NS, IP, project="beta"), None),
        # A watch of one state: a job entering it is ADDED, leaving it DELETED, staying in it MODIFIED.
        ("state = IN_PROGRESS", ALPHA, change(M, NS, IP), A),
        ("state = IN_PROGRESS", ALPHA, change(M, IP, OK), D),
        ("state = IN_PROGRESS", ALPHA, change(M, IP, IP), M),
        ("state = IN_PROGRESS", ALPHA, change(M, NS, NS), None),
        ("state = IN_PROGRESS", ALPHA, change(A, JobState.UNSPECIFIED, NS), None),
        ("state = IN_PROGRESS", ALPHA, change(D, OK, OK), None),
        ("state = NOT_STARTED", ALPHA, change(D, NS, NS), D),
    ],
)
def test_what_a_watch_sends(filter_text: str, caller: Caller, given: JobChange, sent: ChangeType | None) -> None:
    from florist_grpc.jobs.watch_filter import as_seen

    seen = as_seen(given, job_filter.parse(filter_text), caller)
    assert (seen.type if seen else None) == sent
    if seen is not None:
        assert seen.revision == given.revision and seen.job == given.job
