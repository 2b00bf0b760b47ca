"""Whether a job starts now, waits in the queue, or can never run: a pure function of the waiting jobs, what runs,
the limits and the sites (the way jobs/ending.py decides how a job ends).

Waiting jobs are taken in queue order: priority (higher first), then the time they were queued (a job being
started now counts as queued now), then id. Each one that fits starts and its load counts against the jobs after
it; one that does not fit waits, holding only what it waits for: a job held by its project's limit or by an
agent's does not block the others (except later jobs waiting for that same agent, so that a large job is not
overtaken forever by small ones). Once --max-running-jobs is reached nothing more starts. A job that can never
start on one of its sites is refused, not queued: more clients there than that agent may ever run, or a project or
model outside the site's policy (domain/site_policy.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from florist_grpc.domain.site_policy import SitePolicy, policy_refusal


@dataclass(frozen=True)
class Limits:
    """serve's --max-running-jobs and --max-running-jobs-per-project; 0 = no limit."""

    max_running_jobs: int = 0
    max_running_jobs_per_project: int = 0


@dataclass(frozen=True)
class Site:
    """An agent as admission sees it: connected or not, its --max-clients (0 = no limit) and its policy."""

    connected: bool
    max_clients: int = 0
    policy: SitePolicy = field(default_factory=SitePolicy)


@dataclass(frozen=True)
class Candidate:
    """A job waiting to start: its clients per agent (agent-less clients count against no site), its model and
    whether that model is a built-in one (sites' policies)."""

    job_id: str
    project: str
    priority: int
    queue_time: datetime
    clients_by_agent: Mapping[str, int] = field(default_factory=dict)
    model: str = ""
    builtin_model: bool = True


@dataclass(frozen=True)
class Load:
    """What runs now: jobs in total and per project, clients per agent."""

    jobs: int = 0
    jobs_by_project: Mapping[str, int] = field(default_factory=dict)
    clients_by_agent: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Hold:
    """Waits in the queue; `reason` says for what."""

    reason: str


@dataclass(frozen=True)
class Refuse:
    """Can never start as it is; `reason` names the agent and the rule."""

    reason: str


Decision = Start | Hold | Refuse


def queue_order(candidate: Candidate) -> tuple[int, datetime, str]:
    return (-candidate.priority, candidate.queue_time, candidate.job_id)


@dataclass(frozen=True)
class Misfit:
    """Why a job can never start: `agent` is the site, `message` names it and the rule, `reason` is the rule's
    ErrorInfo reason."""

    agent: str
    message: str
    reason: str


def never_fits(candidate: Candidate, sites: Mapping[str, Site]) -> Misfit | None:
    """Why the job can never start (more clients on an agent than it may ever run, or outside a site's policy),
    or None. A site never seen says nothing yet: the job waits for it."""
    for agent, clients in sorted(candidate.clients_by_agent.items()):
        site = sites.get(agent)
        if site is None:
            continue
        if site.max_clients and clients > site.max_clients:
            limit = f"agent {agent} runs at most {site.max_clients} client(s) (--max-clients)"
            return Misfit(agent, f"{limit}; this job has {clients} there", "SITE_MAX_CLIENTS")
        refusal = policy_refusal(agent, site.policy, candidate.project, candidate.model, candidate.builtin_model)
        if refusal is not None:
            return Misfit(agent, refusal.message, refusal.reason)
    return None


def plan(candidates: Sequence[Candidate], load: Load, limits: Limits, sites: Mapping[str, Site]) -> dict[str, Decision]:
    """Each candidate's decision, by job id."""
    jobs = load.jobs
    by_project = Counter(load.jobs_by_project)
    by_agent = Counter(load.clients_by_agent)
    awaited: set[str] = set()  # agents an earlier job waits for: later jobs needing them wait behind it
    decisions: dict[str, Decision] = {}
    for candidate in sorted(candidates, key=queue_order):
        if (misfit := never_fits(candidate, sites)) is not None:
            decisions[candidate.job_id] = Refuse(misfit.message)
            continue
        held = _held(candidate, jobs, by_project, by_agent, awaited, limits, sites)
        if held is not None:
            reason, full_agent = held
            decisions[candidate.job_id] = Hold(reason)
            if full_agent:
                awaited.add(full_agent)
            continue
        decisions[candidate.job_id] = Start()
        jobs += 1
        by_project[candidate.project] += 1
        by_agent.update(candidate.clients_by_agent)
    return decisions


def _held(
    candidate: Candidate,
    jobs: int,
    by_project: Counter[str],
    by_agent: Counter[str],
    awaited: set[str],
    limits: Limits,
    sites: Mapping[str, Site],
) -> tuple[str, str] | None:
    """What the candidate waits for, and the agent whose --max-clients it waits for ('' for anything else); None
    when it fits now."""
    if limits.max_running_jobs and jobs >= limits.max_running_jobs:
        return f"{jobs} job(s) run, the most --max-running-jobs allows", ""
    per_project = limits.max_running_jobs_per_project
    if per_project and by_project[candidate.project] >= per_project:
        running = by_project[candidate.project]
        return f"project {candidate.project} runs {running} job(s), the most --max-running-jobs-per-project allows", ""
    for agent, clients in sorted(candidate.clients_by_agent.items()):
        site = sites.get(agent)
        if site is None or not site.connected:
            return f"agent {agent} is not connected", ""
        if agent in awaited:
            return f"a job ahead in the queue waits for agent {agent}", ""
        if site.max_clients and by_agent[agent] + clients > site.max_clients:
            return f"agent {agent} runs {by_agent[agent]} of its {site.max_clients} client(s) (--max-clients)", agent
    return None
