"""The queue's admission decision (jobs/admission.py): start, wait, or never; a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.jobs.admission import (
    Candidate,
    Decision,
    Hold,
    Limits,
    Load,
    Misfit,
    Refuse,
    Site,
    Start,
    never_fits,
    plan,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SITES = {"a": Site(True, max_clients=2), "b": Site(True), "off": Site(False)}


def job(job_id: str, minute: int = 0, project: str = "p", priority: int = 0, **agents: int) -> Candidate:
    return Candidate(job_id, project, priority, T0 + timedelta(minutes=minute), agents)


def kinds(decisions: dict[str, Decision]) -> dict[str, str]:
    return {job_id: type(d).__name__ for job_id, d in decisions.items()}


CASES = [
    # (what, candidates, load, limits, expected)
    ("no limits: everything starts", [job("x"), job("y")], Load(), Limits(), {"x": "Start", "y": "Start"}),
    (
        "the global limit: the first in queue order start, the rest wait",
        [job("late", 2), job("early", 1), job("first", 0)],
        Load(jobs=1),
        Limits(max_running_jobs=2),
        {"first": "Start", "early": "Hold", "late": "Hold"},
    ),
    (
        "priority before queue time",
        [job("old", 0), job("urgent", 5, priority=10)],
        Load(),
        Limits(max_running_jobs=1),
        {"urgent": "Start", "old": "Hold"},
    ),
    (
        "a job held by its project's limit does not block another project's",
        [job("p1", 0, project="full"), job("q1", 1, project="other")],
        Load(jobs=1, jobs_by_project={"full": 1}),
        Limits(max_running_jobs_per_project=1),
        {"p1": "Hold", "q1": "Start"},
    ),
    (
        "a job held by an agent's limit does not block jobs on other sites",
        [job("big", 0, a=2), job("elsewhere", 1, b=3)],
        Load(jobs=1, clients_by_agent={"a": 1}),
        Limits(),
        {"big": "Hold", "elsewhere": "Start"},
    ),
    (
        "...but later jobs for that agent wait behind it (no overtaking by smaller ones)",
        [job("big", 0, a=2), job("small", 1, a=1)],
        Load(jobs=1, clients_by_agent={"a": 1}),
        Limits(),
        {"big": "Hold", "small": "Hold"},
    ),
    (
        "the load of a job that starts counts against the ones after it",
        [job("one", 0, a=1), job("two", 1, a=1), job("three", 2, a=1)],
        Load(),
        Limits(),
        {"one": "Start", "two": "Start", "three": "Hold"},
    ),
    ("a disconnected agent holds its jobs", [job("x", off=1)], Load(), Limits(), {"x": "Hold"}),
    ("an unknown agent holds its jobs", [job("x", gone=1)], Load(), Limits(), {"x": "Hold"}),
    (
        "more clients on an agent than it may ever run: refused, and blocks nothing",
        [job("never", 0, a=3), job("next", 1, a=2)],
        Load(),
        Limits(),
        {"never": "Refuse", "next": "Start"},
    ),
]


@pytest.mark.parametrize(("what", "candidates", "load", "limits", "expected"), CASES, ids=[c[0] for c in CASES])
def test_admission(
    what: str, candidates: list[Candidate], load: Load, limits: Limits, expected: dict[str, str]
) -> None:
    assert kinds(plan(candidates, load, limits, SITES)) == expected


def test_reasons_name_the_limit_and_the_agent() -> None:
    decisions = plan(
        [job("g", 0), job("n", 1, a=3), job("p", 2, project="q")],
        Load(jobs=2, jobs_by_project={"q": 1}),
        Limits(max_running_jobs=2),
        SITES,
    )
    assert decisions["g"] == Hold("2 job(s) run, the most --max-running-jobs allows")
    assert decisions["n"] == Refuse("agent a runs at most 2 client(s) (--max-clients); this job has 3 there")
    assert isinstance(decisions["p"], Hold)
    started = plan([job("s", 0, b=1)], Load(), Limits(), SITES)
    assert started == {"s": Start()}
    held = plan([job("h", 0, a=2)], Load(clients_by_agent={"a": 1}), Limits(), SITES)["h"]
    assert held == Hold("agent a runs 1 of its 2 client(s) (--max-clients)")


def test_a_job_outside_a_sites_policy_never_fits_even_while_the_site_is_away() -> None:
    sites = {"a": Site(False, policy=SitePolicy(projects=("vision",), models=("MyNet",)))}
    vision = Candidate("v", "vision", 0, T0, {"a": 1}, model="MyNet", builtin_model=False)
    assert never_fits(vision, sites) is None
    speech = Candidate("s", "speech", 0, T0, {"a": 1}, model="MyNet", builtin_model=False)
    rule = "agent a does not run jobs of project 'speech' (--allow-project vision)"
    assert never_fits(speech, sites) == Misfit("a", rule, "SITE_PROJECT_NOT_ALLOWED")
    mlp = Candidate("m", "vision", 0, T0, {"a": 1}, model="MLP")
    assert plan([mlp], Load(), Limits(), sites) == {
        "m": Refuse("agent a does not run model 'MLP' (--allow-model MyNet)")
    }
    assert never_fits(speech, {}) is None  # a site never seen has said nothing yet: the job waits for it
