"""Clients that run at sites: checked with their agents before StartTraining launches anything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from florist_grpc.domain.errors import FailedPrecondition, FieldViolation, quote
from florist_grpc.domain.model import Job
from florist_grpc.domain.projects import EVERY_PROJECT, Projects
from florist_grpc.launch.agent_protocol import ClientJob
from florist_grpc.launch.agents import Agents

# The projects whose jobs may run clients on an agent's site (its token's PROJECTS); None: no token names it.
SiteProjects = Callable[[str], Projects | None]


def every_project(agent: str) -> Projects | None:
    """Without an auth file every site runs the jobs of every project."""
    return EVERY_PROJECT


def check_site_projects(site_projects: SiteProjects, job: Job) -> None:
    """Every agent-run client's site may run jobs of the job's project (its agent token's PROJECTS): a job that
    can never run there is refused before anything launches. FailedPrecondition naming agent and rule."""
    for i, client in enumerate(job.clients):
        if not client.agent:
            continue
        projects = site_projects(client.agent)
        field = f"job.clients[{i}].agent"
        if projects is None:
            rule = f"agent {client.agent} has no token in the auth file: it cannot run clients"
            raise FailedPrecondition(f"job.clients[{i}]: {rule}", [FieldViolation(field, rule)], reason="AGENT_UNKNOWN")
        if not projects.includes(job.project):
            rule = f"agent {client.agent} may not run jobs of project {quote(job.project)}: "
            rule += f"its token's PROJECTS are {projects}"
            raise FailedPrecondition(
                f"job.clients[{i}]: {rule}", [FieldViolation(field, rule)], reason="SITE_PROJECT_NOT_ALLOWED"
            )


async def check_site_clients(agents: Agents, job: Job) -> None:
    """Every agent-run client's agent is connected and healthy (it says so in its heartbeats: a site whose own
    Redis is down cannot relay its clients' reports), and its data path is inside that agent's data root and
    readable there (the agent checks). Raises FailedPrecondition naming the agent and the client otherwise."""
    remote = [(i, c) for i, c in enumerate(job.clients) if c.agent]
    for i, client in remote:
        try:
            session = agents.session(client.agent)
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"job.clients[{i}]: {exc}") from exc
        if session.problem:
            raise FailedPrecondition(
                f"job.clients[{i}]: agent {client.agent} cannot run clients now: {session.problem}"
            )
    problems = await asyncio.gather(*(agents.check_data(c.agent, c.data_path, ClientJob.of(job, i)) for i, c in remote))
    for (i, client), problem in zip(remote, problems, strict=True):
        if problem:
            raise FailedPrecondition(
                f"job.clients[{i}].data_path {client.data_path!r} on agent {client.agent}: {problem}"
            )
