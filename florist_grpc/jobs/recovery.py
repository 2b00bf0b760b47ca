"""Restart recovery: re-attach every IN_PROGRESS job to the follower, adopting its processes where they run, and
go on retrying the stops sites had not confirmed."""

from __future__ import annotations

import logging

from florist_grpc.domain.model import SERVER_SOURCE, JobState, ProcessRef
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.run import RunningProcess
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.handles import LocalProcess, ProcessHandle
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)


def recover(store: JobStore, follower: JobFollower, agents: Agents) -> int:
    """Re-attach every IN_PROGRESS job after a restart, resume the unconfirmed stops; returns how many jobs."""
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
        processes = {
            SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, job.server_uuid, LocalProcess(job.server_process))
        }
        reports = {SERVER_SOURCE.key: job.server_metrics}
        for i, client in enumerate(job.clients):
            source = job.client_source(i)
            handle: ProcessHandle | None = None
            if client.agent and client.uuid:
                # Counts as running until its agent reconnects and says otherwise (or stays away too long).
                handle = agents.adopt(client.agent, client.uuid, client.process, job.server_address)
            elif client.process.pid:
                handle = LocalProcess(client.process)
            processes[source.key] = RunningProcess(source, client.uuid, handle)
            reports[source.key] = client.metrics
        follower.attach(job.id, processes, reports)
        log.info("re-attached IN_PROGRESS job %s", job.id)
    return len(jobs)
