"""Restart recovery: re-attach every IN_PROGRESS job to the follower, adopting its processes where they run, and
go on retrying the stops sites had not confirmed; and at a stop, leave the embedded Redis to the jobs still running
in it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from florist_grpc.domain.model import SERVER_SOURCE, JobState, ProcessRef
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.run import RunningProcess
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.handles import LocalProcess, ProcessHandle
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)


def recover(
    store: JobStore, follower: JobFollower, agents: Agents, adopt: Callable[[ProcessRef], ProcessHandle] = LocalProcess
) -> int:
    """Re-attach every IN_PROGRESS job after a restart, resume the unconfirmed stops; returns how many jobs.
    `adopt` finds a process of the control plane's own again by its ref (the launcher's, launch/launcher.py:
    a pid here, a Slurm job id under Slurm)."""
    stops = store.stops.pending()
    if stops:
        # Each counts as running until its agent reconnects and says otherwise (or stays away past the grace).
        follower.resume_stops(
            [(s, agents.adopt(s.agent, s.client_uuid, ProcessRef(agent_address=s.agent))) for s in stops]
        )
        log.info("retrying %d stop(s) that sites had not confirmed", len(stops))
    jobs = store.jobs_in_state(JobState.IN_PROGRESS)
    for job in jobs:
        if not job.server_uuid:
            follower.end(
                job.id,
                JobState.FINISHED_WITH_ERROR,
                "the control plane restarted before this job's FL server was launched",
            )
            continue
        processes = {SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, job.server_uuid, adopt(job.server_process))}
        reports = {SERVER_SOURCE.key: job.server_metrics}
        for i, client in enumerate(job.clients):
            source = job.client_source(i)
            handle: ProcessHandle | None = None
            if client.agent and client.uuid:
                # Counts as running until its agent reconnects and says otherwise (or stays away too long).
                handle = agents.adopt(client.agent, client.uuid, client.process, job.server_address)
            elif client.process.pid or client.process.slurm_job_id:
                handle = adopt(client.process)
            processes[source.key] = RunningProcess(source, client.uuid, handle)
            reports[source.key] = client.metrics
        follower.attach(job.id, processes, reports)
        log.info("re-attached IN_PROGRESS job %s", job.id)
    return len(jobs)


async def stop_embedded_redis(embedded: EmbeddedRedis, store: JobStore) -> None:
    """Stop the embedded Redis unless jobs are in progress: their FL processes keep reporting into it, and a
    restarted control plane adopts it and resumes."""
    try:
        in_progress = await asyncio.to_thread(store.jobs_in_state, JobState.IN_PROGRESS)
    except Exception as exc:  # the store is unreadable: keep the Redis, as if jobs were running
        log.warning("leaving the embedded Redis running: cannot tell whether jobs are in progress (%s)", exc)
        return
    if in_progress:
        log.info("leaving the embedded Redis running for %d IN_PROGRESS job(s)", len(in_progress))
    else:
        await asyncio.to_thread(embedded.stop)
