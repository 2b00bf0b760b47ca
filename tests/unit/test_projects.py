"""Projects and callers: the pure rules of who sees which jobs and where a new job belongs."""

from __future__ import annotations

import pytest

from florist_grpc.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from florist_grpc.domain.model import Client, Job
from florist_grpc.domain.projects import EVERY_PROJECT, LOCAL_CALLER, Caller, Projects
from florist_grpc.jobs.sites import check_site_projects
from tests.store.test_store_contract import new_job


@pytest.mark.parametrize(
    ("text", "names", "every"),
    [("*", set(), True), ("alpha", {"alpha"}, False), ("alpha,beta-2", {"alpha", "beta-2"}, False)],
)
def test_projects_parse_a_list_or_every(text: str, names: set[str], every: bool) -> None:
    parsed = Projects.parse(text)
    assert (set(parsed.names), parsed.every) == (names, every)


@pytest.mark.parametrize("text", ["", "Alpha", "1team", "a_b", "alpha,", "a" * 64, "alpha,*"])
def test_a_bad_project_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="project"):
        Projects.parse(text)


def test_sixty_three_characters_is_the_longest_name() -> None:
    assert Projects.parse("a" * 63).includes("a" * 63)


ALPHA = Caller("ann", "operator", Projects.of(["alpha"]))
TWO = Caller("bob", "operator", Projects.of(["alpha", "beta"]))
EVERYONE = Caller("root", "admin", EVERY_PROJECT)


@pytest.mark.parametrize(
    ("caller", "requested", "project"),
    [
        (ALPHA, "", "alpha"),  # the caller's only project
        (EVERYONE, "", "default"),  # a caller of every project
        (LOCAL_CALLER, "", "default"),  # no auth file
        (TWO, "beta", "beta"),
        (EVERYONE, "anything", "anything"),
    ],
)
def test_a_new_job_belongs_to_the_project_it_names_or_the_callers_only_one(
    caller: Caller, requested: str, project: str
) -> None:
    assert caller.project_for(requested) == project


def test_a_caller_of_several_projects_must_name_one_and_is_told_which() -> None:
    with pytest.raises(InvalidArgument) as raised:
        TWO.project_for("")
    assert raised.value.violations[0].field == "job.project"
    assert "alpha,beta" in raised.value.violations[0].description


def test_a_project_outside_the_callers_is_permission_denied_and_a_bad_name_invalid() -> None:
    with pytest.raises(PermissionDenied, match="alpha"):
        ALPHA.project_for("beta")
    with pytest.raises(InvalidArgument):
        EVERYONE.project_for("Not A Name")


@pytest.mark.parametrize(
    ("role", "viewer", "operator", "admin"),
    [
        ("viewer", True, False, False),
        ("operator", True, True, False),
        ("admin", True, True, True),
        ("agent",) + (False,) * 3,
    ],
)
def test_roles_nest(role: str, viewer: bool, operator: bool, admin: bool) -> None:
    caller = Caller("x", role)
    assert (caller.may("viewer"), caller.may("operator"), caller.may("admin")) == (viewer, operator, admin)


def site_job(project: str) -> Job:
    job = new_job("j")
    job.project = project
    job.clients = [Client(data_path="a.pt"), Client(data_path="b.pt", agent="site-a")]
    return job


def test_a_site_runs_only_the_jobs_of_its_agent_tokens_projects() -> None:
    sites = {"site-a": Projects.of(["alpha"])}
    check_site_projects(sites.get, site_job("alpha"))
    with pytest.raises(FailedPrecondition) as raised:
        check_site_projects(sites.get, site_job("beta"))
    assert "job.clients[1]: agent site-a may not run jobs of project 'beta'" in str(raised.value)
    assert "alpha" in str(raised.value)


def test_a_site_no_token_names_runs_nothing() -> None:
    with pytest.raises(FailedPrecondition, match="no token"):
        check_site_projects(lambda name: None, site_job("alpha"))
