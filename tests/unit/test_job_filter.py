"""ListJobs filter: the AIP-160 subset, as a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.domain.model import Client, Job, JobState
from florist_grpc.jobs.job_filter import parse


def job(state: JobState, model: str = "MLP", strategy: str = "FEDAVG") -> Job:
    return Job("j", model, strategy, "SGD", "FEDAVG", {}, [Client("/d")], datetime(2026, 1, 1, tzinfo=UTC), state)


@pytest.mark.parametrize(
    ("text", "matching", "not_matching"),
    [
        ("", job(JobState.CANCELLED), None),
        ("state = IN_PROGRESS", job(JobState.IN_PROGRESS), job(JobState.NOT_STARTED)),
        ("state = JOB_STATE_IN_PROGRESS", job(JobState.IN_PROGRESS), job(JobState.CANCELLED)),
        ("state = in_progress", job(JobState.IN_PROGRESS), job(JobState.CANCELLED)),
        (
            "state = JOB_STATE_FINISHED_WITH_ERROR OR state = CANCELLED",
            job(JobState.CANCELLED),
            job(JobState.IN_PROGRESS),
        ),
        ('model = "MLP"', job(JobState.NOT_STARTED), job(JobState.NOT_STARTED, model="MNIST_CNN")),
        ("strategy = FEDPROX", job(JobState.NOT_STARTED, strategy="FEDPROX"), job(JobState.NOT_STARTED)),
        (
            'model = "MLP" AND state = CANCELLED OR state = NOT_STARTED',  # OR binds tighter than AND
            job(JobState.NOT_STARTED),
            job(JobState.IN_PROGRESS),
        ),
    ],
)
def test_filters_select_jobs(text: str, matching: Job, not_matching: Job | None) -> None:
    selected = parse(text)
    assert selected.matches(matching)
    if not_matching is not None:
        assert not selected.matches(not_matching)


def test_a_lone_state_is_pushed_down_to_the_store() -> None:
    assert parse("state = CANCELLED").only_state is JobState.CANCELLED
    assert parse("state = CANCELLED OR state = IN_PROGRESS").only_state is None
    assert parse('model = "MLP"').only_state is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("creator = me", "cannot filter on 'creator'"),
        ("state = RUNNING", "unknown state 'RUNNING'"),
        ("state = UNSPECIFIED", "unknown state"),
        ("state IN_PROGRESS", "expected FIELD = VALUE"),
        ("state = IN_PROGRESS AND", "expected AND or OR followed by a comparison"),
        ("state = IN_PROGRESS XOR state = CANCELLED", "expected AND or OR"),
        ("state != CANCELLED", "unexpected '!'"),
        ("(state = CANCELLED)", "unexpected '('"),
    ],
)
def test_anything_else_is_a_field_violation_on_filter(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse(text)
    [violation] = raised.value.violations
    assert violation.field == "filter"
    assert says in violation.description
