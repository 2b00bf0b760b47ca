"""Clients that run at sites: checked with their agents before StartTraining launches anything."""

from __future__ import annotations

import asyncio

from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.model import Job
from florist_grpc.launch.agents import Agents


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
    problems = await asyncio.gather(*(agents.check_data(c.agent, c.data_path) for _, c in remote))
    for (i, client), problem in zip(remote, problems, strict=True):
        if problem:
            raise FailedPrecondition(
                f"job.clients[{i}].data_path {client.data_path!r} on agent {client.agent}: {problem}"
            )
