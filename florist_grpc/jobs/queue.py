"""The queue: admission decided one start at a time, and the dispatcher that starts queued jobs as capacity frees.

Every decision and the state change it leads to (NOT_STARTED -> IN_PROGRESS or QUEUED, QUEUED -> IN_PROGRESS) are
made under one lock, so two starts never both take the last slot. The decision is jobs/admission.plan, a pure
function, applied to what the store says runs and waits, and to the agents' capacity.

The dispatcher does not poll. It wakes when capacity may have freed (a running job reached a terminal state: the
store's change feed says so; an agent connected), when a start from the queue ended, and once at startup (the
queue is in the store: it survives a restart); it then starts, in queue order, every queued job that fits, each
exactly as StartTraining would (checked again, all or nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from florist_grpc.domain.catalog import BUILTIN_MODELS
from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.model import Job, JobChange, JobState
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
from florist_grpc.jobs.sites import SiteProjects, check_site_projects, every_project
from florist_grpc.launch.agents import Agents
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)

Sites = Callable[[], Mapping[str, Site]]


def agent_sites(agents: Agents) -> Sites:
    """The agents' capacity as admission sees it (an agent never seen since the start is not connected)."""
    return lambda: {a.name: Site(a.connected, a.max_clients, a.policy) for a in agents.list()}


def candidate(job: Job, now: datetime) -> Candidate:
    """A job as admission weighs it; one not queued yet counts as queued `now`."""
    agents = Counter(c.agent for c in job.clients if c.agent)
    builtin = job.model in BUILTIN_MODELS
    return Candidate(job.id, job.project, job.priority, job.queue_time or now, dict(agents), job.model, builtin)


def load_of(running: list[Job]) -> Load:
    return Load(
        jobs=len(running),
        jobs_by_project=dict(Counter(j.project for j in running)),
        clients_by_agent=dict(Counter(c.agent for j in running for c in j.clients if c.agent)),
    )


class Admission:
    """Admission decisions. Take `lock` around a decision and the state change it leads to."""

    def __init__(
        self, store: JobStore, limits: Limits, sites: Sites, site_projects: SiteProjects = every_project
    ) -> None:
        self.lock = asyncio.Lock()
        self._store = store
        self._limits = limits
        self._sites = sites
        self._site_projects = site_projects

    def _read(self) -> tuple[list[Job], Load]:
        return self._store.jobs_in_state(JobState.QUEUED), load_of(self._store.jobs_in_state(JobState.IN_PROGRESS))

    def never_fits(self, job: Job) -> Misfit | None:
        """Why the job can never start as the agents are now (checked first: before any agent is asked)."""
        return never_fits(candidate(job, datetime.now(UTC)), self._sites())

    async def decide(self, job: Job) -> Decision:
        """Whether `job` (NOT_STARTED, or QUEUED) starts now, waits, or can never start, given the jobs queued ahead."""
        queued, load = await asyncio.to_thread(self._read)
        now = datetime.now(UTC)
        candidates = [candidate(j, now) for j in queued if j.id != job.id] + [candidate(job, now)]
        return plan(candidates, load, self._limits, self._sites())[job.id]

    async def queue(self) -> list[tuple[Job, Decision]]:
        """Every queued job with its decision, in queue order."""
        queued, load = await asyncio.to_thread(self._read)
        now = datetime.now(UTC)
        decisions = plan([candidate(j, now) for j in queued], load, self._limits, self._sites())
        for job in queued:
            # A site that may no longer run the job (its agent's token left the auth file, or its PROJECTS
            # changed) never will: the job must not wait for an agent that cannot come back for it.
            try:
                check_site_projects(self._site_projects, job)
            except FailedPrecondition as exc:
                decisions[job.id] = Refuse(str(exc))
        order = {job_id: i for i, job_id in enumerate(decisions)}
        return sorted(((j, decisions[j.id]) for j in queued), key=lambda pair: order[pair[0].id])


class Turn:
    """A start from the queue commits only once the start ahead of it has committed (or given up): jobs that leave
    the queue together start in queue order, while their checks (which take a while) run side by side."""

    def __init__(self, ahead: asyncio.Future[None] | None) -> None:
        self._ahead = ahead
        self.mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        if self._ahead is not None:
            await asyncio.shield(self._ahead)

    def done(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


class QueueDispatcher:
    """Starts queued jobs when they fit. `start_queued(job_id)` starts one (checked again, and decided again under
    the lock) and says whether it left the queue; `end_queued(job_id, why)` ends one that can never start."""

    def __init__(
        self,
        admission: Admission,
        start_queued: Callable[[str, Turn], Awaitable[bool]],
        end_queued: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._admission = admission
        self._start_queued = start_queued
        self._end_queued = end_queued
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._last_turn: asyncio.Future[None] | None = None  # the latest start's turn: the next one waits for it
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake.set()  # the queue survives a restart: look at it once now
        self._task = asyncio.create_task(self._run(), name="florist-queue-dispatcher")

    async def stop(self) -> None:
        for task in [self._task, *self._starting.values()]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._task, *self._starting.values()] if t], return_exceptions=True)

    def wake(self) -> None:
        """Look at the queue again (event loop)."""
        self._wake.set()

    def on_change(self, change: JobChange) -> None:
        """The store's change feed, from a writing thread: a running job that ended freed its capacity."""
        job = change.job
        freed = job is not None and job.state.terminal and change.previous_state is JobState.IN_PROGRESS
        if freed and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._dispatch()
            except Exception:
                log.exception("looking at the queue failed; trying again at the next change")

    async def _dispatch(self) -> None:
        async with self._admission.lock:
            queue = await self._admission.queue()
        for job, decision in queue:
            if isinstance(decision, Refuse):
                await self._end_queued(job.id, f"it can never start: {decision.reason}")
            elif isinstance(decision, Start) and job.id not in self._starting:
                turn = Turn(self._last_turn)
                self._last_turn = turn.mine
                task = asyncio.create_task(self._start(job.id, turn), name=f"florist-dequeue-{job.id}")
                self._starting[job.id] = task
            elif isinstance(decision, Hold):
                log.debug("job %s waits: %s", job.id, decision.reason)

    async def _start(self, job_id: str, turn: Turn) -> None:
        left = False
        try:
            left = await self._start_queued(job_id, turn)
        except Exception as exc:  # the job itself says why (it ended), or it stays queued until the next change
            log.warning("job %s: start from the queue failed: %s", job_id, exc)
        finally:
            turn.done()
            self._starting.pop(job_id, None)
        if left:
            self._wake.set()  # a job that left the queue without running leaves its place to the next one
