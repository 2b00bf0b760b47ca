"""StartTraining, StopTraining and the start of a queued job: the checks, the admission decision, the launch
sequence around the follower."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.config import Timeouts
from florist_grpc.domain.catalog import DEFAULT_CATALOG, Catalog
from florist_grpc.domain.errors import DeadlineExceeded, FailedPrecondition, FieldViolation, job_not_found, quote
from florist_grpc.domain.model import Job, JobState, MetricsEvent
from florist_grpc.jobs.admission import Hold, Limits, Refuse
from florist_grpc.jobs.data_check import DataChecker, DataShape, RemoteProbe
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.launch_sequence import LaunchSequence
from florist_grpc.jobs.queue import Admission, Turn, agent_sites
from florist_grpc.jobs.sites import SiteProjects, check_site_clients, check_site_projects, every_project
from florist_grpc.jobs.starting import STOP_MESSAGE, Starts
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.launcher import Launcher, LocalLauncher
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.metrics.publisher import EventPublisher
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import redis_address_of
from florist_grpc.store.base import JobStore
from florist_grpc.tls_files import TLSConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """What StartTraining answers: the run uuids, or that the job was queued (no uuids yet)."""

    server_uuid: str
    client_uuids: list[str]
    queued: bool = False


def _failed_alone(job_id: str, task: asyncio.Task[Started]) -> None:
    """A start whose caller left: a failure after the commit ended the job saying why, one before it (the store,
    another start of the job) would otherwise be told to nobody."""
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.warning("job %s: the start its caller left failed: %s", job_id, failure)


class Trainer:
    def __init__(
        self,
        store: JobStore,
        follower: JobFollower,
        publisher: EventPublisher,
        agents: Agents,
        redis_url: str,
        data_dir: Path,
        timeouts: Timeouts,
        users: RunUsers,
        tls: TLSConfig | None = None,
        catalog: Catalog = DEFAULT_CATALOG,
        remote_probe: RemoteProbe | None = None,
        pool: LauncherPool | None = None,
        data_roots: tuple[Path, ...] = (),
        site_projects: SiteProjects = every_project,
        admission: Admission | None = None,
        launcher: Launcher | None = None,
        jobs_dir: Path | None = None,
    ) -> None:
        """`launcher`: where FL servers and agent-less clients run (default: this machine, through `pool`).
        `jobs_dir`: their logs and models (default DATA_DIR/jobs; a dir every node sees under a cluster)."""
        # Decides, one start at a time, whether a job starts now or waits in the queue (no limits by default).
        self._admission = admission or Admission(store, Limits(), agent_sites(agents), site_projects)
        self._site_projects = site_projects  # an agent token's PROJECTS bound the jobs its site runs
        self._users = users
        self.starts = Starts()
        self._starting: set[asyncio.Task[Started]] = set()  # starts that go on whether their callers wait or not
        self._catalog = catalog
        # remote_probe reads an agent-run client's data summary through its agent's session.
        # data_roots (serve --data-root) confine local clients' data files; none = any absolute regular file.
        self._data = DataChecker(timeouts.data_check_seconds, remote_probe, pool, data_roots)
        self._store = store
        self._follower = follower
        self._publisher = publisher  # the IN_PROGRESS event goes where every other event goes, and is counted
        self._agents = agents
        self._timeouts = timeouts
        self._sequence = LaunchSequence(
            store,
            follower,
            agents,
            self.starts,
            users,
            redis_address_of(redis_url),
            jobs_dir or data_dir.resolve() / "jobs",
            timeouts,
            tls,
            launcher or LocalLauncher(pool),
        )
        self.log_path = self._sequence.log_path
        self.model_dir = self._sequence.model_dir

    async def _checks(self, job: Job) -> DataShape:
        """Everything a start checks before the job moves, again when it leaves the queue: its sites may run this
        project's jobs, their agents are connected and can read their data, the model, the data itself."""
        check_site_projects(self._site_projects, job)
        if (misfit := self._admission.never_fits(job)) is not None:
            on_site = [i for i, c in enumerate(job.clients) if c.agent == misfit.agent]
            raise FailedPrecondition(
                f"job {quote(job.id)} can never start: {misfit.message}",
                [FieldViolation(f"job.clients[{i}].agent", misfit.message) for i in on_site],
                reason=misfit.reason,
            )
        await check_site_clients(self._agents, job)
        spec = self._catalog.models.get(job.model)
        if spec is None:  # a plugin's model, and the plugin is no longer installed
            raise FailedPrecondition(f"model {job.model} is not in the catalog any more; install its plugin again")
        return await self._data.check(job, spec)

    async def _commit(self, job: Job, from_state: JobState, to_state: JobState, reason: str = "") -> MetricsEvent:
        event = await asyncio.to_thread(
            self._store.transition, job.id, {from_state}, to_state, datetime.now(UTC), "", reason
        )
        if event is None:
            current = await asyncio.to_thread(self._store.get_job, job.id)
            state = current.state.name if current else "deleted"
            raise FailedPrecondition(
                f"job {quote(job.id)} is {state}; only a NOT_STARTED job can be started", reason="JOB_NOT_STARTABLE"
            )
        self._publisher.publish([event])
        return event

    async def start(self, job_id: str) -> Started:
        """Start the job now, or queue it when a limit says it must wait (every check runs first either way)."""
        await asyncio.to_thread(self._users.check)  # Redis down: UNAVAILABLE now, and the job stays NOT_STARTED
        job = await asyncio.to_thread(self._store.get_job, job_id)
        if job is None:
            raise job_not_found(job_id)
        # Checked before the job moves: a refusal leaves it NOT_STARTED, to start once the site or file is fixed.
        if job.state is not JobState.NOT_STARTED:
            raise FailedPrecondition(
                f"job {quote(job_id)} is {job.state.name}; only a NOT_STARTED job can be started",
                reason="JOB_NOT_STARTABLE",
            )
        shape = await self._checks(job)
        # From here on the start belongs to the control plane, not to the call: a caller who goes away (its
        # deadline, Ctrl-C) must not cut a commit or a launch in the middle. Cut, it left the job IN_PROGRESS with
        # part of its federation launched, and a launch thread's processes that nobody knew of.
        task = asyncio.create_task(self._start_checked(job, shape), name=f"florist-start-{job_id}")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                log.info("job %s: StartTraining's caller went away; the start goes on", job_id)
                task.add_done_callback(functools.partial(_failed_alone, job_id))
                if (start := self.starts.of(job_id)) is not None:
                    start.caller_gone.set()
            raise

    async def close(self) -> None:
        """Shutting down: starts still launching are cancelled (a restart finds their jobs IN_PROGRESS)."""
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)

    async def _start_checked(self, job: Job, shape: DataShape) -> Started:
        job_id = job.id
        with self.starts.starting(job_id) as start:  # before the commit: a stop from then on reaches this start
            async with self._admission.lock:
                decision = await self._admission.decide(job)
                if isinstance(decision, Refuse):
                    raise FailedPrecondition(
                        f"job {quote(job_id)} can never start: {decision.reason}", reason="JOB_NEVER_FITS"
                    )
                if isinstance(decision, Hold):
                    await self._commit(job, JobState.NOT_STARTED, JobState.QUEUED, decision.reason)
                    log.info("job %s queued: %s", job_id, decision.reason)
                    return Started("", [], queued=True)
                await self._commit(job, JobState.NOT_STARTED, JobState.IN_PROGRESS)
            return Started(*await self._sequence.run(job, shape, start))

    async def start_queued(self, job_id: str, turn: Turn | None = None) -> bool:
        """Start a QUEUED job the queue says fits, exactly as StartTraining would: every check again (one that
        fails ends the job FINISHED_WITH_ERROR saying why), decided again, the same launch. Whether the job left
        the queue (an outage, Redis or an agent, leaves it queued until the next change)."""
        job = await asyncio.to_thread(self._store.get_job, job_id)
        if job is None or job.state is not JobState.QUEUED:
            return False
        await asyncio.to_thread(self._users.check)
        try:
            shape = await self._checks(job)
        except FailedPrecondition as exc:
            # The job's error says all of it: the violations are not in the message (a caller gets them as details).
            told = [f"{v.field}: {v.description}" for v in exc.violations if v.description not in str(exc)]
            why = "; ".join([str(exc), *told])
            await self.end_queued(job_id, f"could not start from the queue: {why}")
            return True
        if turn is not None:
            await turn.wait()  # the job ahead in the queue commits first
        with self.starts.starting(job_id) as start:
            async with self._admission.lock:
                decision = await self._admission.decide(job)
                if isinstance(decision, Refuse):
                    await self.end_queued(job_id, f"it can never start: {decision.reason}")
                    return True
                if isinstance(decision, Hold):
                    return False
                try:
                    await self._commit(job, JobState.QUEUED, JobState.IN_PROGRESS)
                except FailedPrecondition:
                    return True  # stopped (or deleted) meanwhile
            if turn is not None:
                turn.done()  # committed: the next job's turn (it need not wait for this launch)
            await self._sequence.run(job, shape, start)
            return True

    async def end_queued(self, job_id: str, message: str) -> None:
        """A queued job that cannot start ends FINISHED_WITH_ERROR saying why."""
        event = await asyncio.to_thread(
            self._store.transition, job_id, {JobState.QUEUED}, JobState.FINISHED_WITH_ERROR, datetime.now(UTC), message
        )
        if event is not None:
            self._publisher.publish([event])
            log.warning("job %s left the queue: %s", job_id, message)

    async def _cancel_queued(self, job_id: str) -> MetricsEvent | None:
        event = await asyncio.to_thread(
            self._store.transition, job_id, {JobState.QUEUED}, JobState.CANCELLED, datetime.now(UTC), STOP_MESSAGE
        )
        if event is not None:
            self._publisher.publish([event])
        return event

    async def stop(self, job_id: str) -> MetricsEvent | None:
        """End the job CANCELLED. Bounded whatever its sites do: the end waits on a site at most the stop grace
        (then its stop is recorded unconfirmed and retried in the background), and the whole call at most
        `stop_seconds` (DEADLINE_EXCEEDED: the stop goes on)."""
        bound = self._timeouts.stop_seconds
        try:
            return await asyncio.wait_for(self._stop(job_id), bound)
        except TimeoutError:
            raise DeadlineExceeded(
                f"job {quote(job_id)} is still being stopped after {bound:g}s; its end will follow",
                reason="STOP_IN_PROGRESS",
            ) from None

    async def _stop(self, job_id: str) -> MetricsEvent | None:
        if (event := await self._cancel_queued(job_id)) is not None:  # a queued job leaves the queue CANCELLED
            return event
        start = self.starts.request_stop(job_id)
        if start is not None:  # the start ends the job CANCELLED at its next step and answers ABORTED
            event = await asyncio.shield(start.stopped)
            if event is not None:
                return event
            if (event := await self._cancel_queued(job_id)) is not None:  # that start queued it meanwhile
                return event
        future = self._follower.end(job_id, JobState.CANCELLED, STOP_MESSAGE)
        return await asyncio.shield(asyncio.wrap_future(future))
