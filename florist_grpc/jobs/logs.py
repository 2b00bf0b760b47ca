"""StreamLogs, independent of gRPC: whose log a request names, and where that log is read (this machine's file,
or the client's agent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from florist_grpc.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from florist_grpc.domain.model import (
    SERVER_SOURCE,
    ClientLogByIndex,
    ClientLogByUuid,
    Job,
    LogSource,
    ServerLog,
    Source,
    SourceKind,
)
from florist_grpc.domain.projects import Caller
from florist_grpc.jobs.registry import JobRegistry
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.logs import follow_log


def log_owner(job: Job, source: LogSource) -> Source:
    """The process of `job` whose log `source` names; INVALID_ARGUMENT naming the field if it names none."""
    match source:
        case ServerLog():
            return SERVER_SOURCE
        case ClientLogByIndex(index):
            if not 0 <= index < len(job.clients):
                violation = FieldViolation("source.client_index", f"must be in 0..{len(job.clients) - 1}")
                raise InvalidArgument([violation])
            return job.client_source(index)
        case ClientLogByUuid(uuid):
            matches = [i for i, c in enumerate(job.clients) if c.uuid and c.uuid == uuid]
            if not matches:
                raise InvalidArgument([FieldViolation("source.client_uuid", "is not a client of this job")])
            return job.client_source(matches[0])


class JobLogs:
    """The logs of a job's FL processes. `log_path(job_id, source_key)` is where a process on this machine logs
    (jobs/training.py decides it when it launches one)."""

    def __init__(self, registry: JobRegistry, agents: Agents, log_path: Callable[[str, str], Path]) -> None:
        self._registry = registry
        self._agents = agents
        self._log_path = log_path

    async def read(
        self, job_id: str, source: LogSource, offset: int, follow: bool, caller: Caller
    ) -> AsyncIterator[tuple[str, int]]:
        """The log as (text, next_offset) chunks from byte `offset`; with `follow`, until the job has ended and
        the log is drained. NOT_FOUND for a job of a project the caller does not see."""
        if offset < 0:
            raise InvalidArgument([FieldViolation("offset", "must not be negative")])
        job = await self._registry.get(job_id, caller)
        owner = log_owner(job, source)
        client = job.clients[owner.client_index] if owner.kind is SourceKind.CLIENT else None

        async def finished() -> bool:
            return (await self._registry.get(job_id, caller)).state.terminal

        chunks: AsyncIterator[tuple[str, int]]
        if client is not None and client.agent:
            if not client.uuid:
                raise FailedPrecondition(f"{owner.key} has not been started")
            chunks = self._agents.stream_log(client.agent, client.uuid, offset, follow)
        else:
            chunks = follow_log(self._log_path(job.id, owner.key), offset, follow, finished)
        async for chunk in chunks:
            yield chunk
