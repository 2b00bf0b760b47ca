"""CreateJob / GetJob / ListJobs / DeleteJob, independent of gRPC."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.domain.catalog import DEFAULT_CATALOG, Catalog
from florist_grpc.domain.errors import FieldViolation, InvalidArgument, PermissionDenied, job_not_found
from florist_grpc.domain.model import Job, JobState
from florist_grpc.domain.projects import Caller
from florist_grpc.domain.validation import validate_job
from florist_grpc.jobs.job_filter import JobFilter
from florist_grpc.jobs.listing import filtered_page
from florist_grpc.net import LOOPBACK, address_problem, free_service_port
from florist_grpc.store.base import JobStore, PageCursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class JobRegistry:
    def __init__(
        self,
        store: JobStore,
        redis_address: str,
        jobs_dir: Path,
        host: str = "127.0.0.1",
        catalog: Catalog = DEFAULT_CATALOG,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._redis_address = redis_address
        self._jobs_dir = jobs_dir
        self._host = host

    def _address_violations(self, job: Job) -> list[FieldViolation]:
        fields = [("job.server_address", job.server_address), ("job.redis_address", job.redis_address)]
        for i, client in enumerate(job.clients):
            fields += [(f"job.clients[{i}].redis_address", client.redis_address)]
        problems = [FieldViolation(name, p) for name, address in fields if address and (p := address_problem(address))]
        # The listeners follow only the control plane's own Redis: a job may not point them anywhere else.
        problems += [
            FieldViolation(name, f"must be empty or {self._redis_address}")
            for name, address in fields
            if name.endswith("redis_address") and address not in ("", self._redis_address)
        ]
        return problems

    async def create(self, job: Job, request_id: str, validate_only: bool, caller: Caller) -> Job:
        """Validate and store; with validate_only (AIP-163) return the job as it would be created, storing nothing.
        The job belongs to the project it names (or the caller's only one) and is owned by the caller."""
        if len(request_id) > 128:
            raise InvalidArgument([FieldViolation("request_id", "at most 128 characters")])
        if job.priority and not caller.may("admin"):
            # PERMISSION_DENIED, not INVALID_ARGUMENT: the value is fine, the caller's role may not set it.
            raise PermissionDenied(
                f"{caller.name} ({caller.role}) may not set job.priority: only an admin orders the queue",
                reason="PRIORITY_NEEDS_ADMIN",
            )
        job = replace(job, project=caller.project_for(job.project), owner=caller.name)
        validate_job(job, self._address_violations(job), self._catalog)
        if not job.server_address:
            # Agent-run clients cannot reach a loopback address on another machine: advertise this host to them.
            remote = any(c.agent for c in job.clients)
            host = self._host if remote else LOOPBACK
            port = free_service_port(LOOPBACK if host == LOOPBACK else "0.0.0.0")
            job = replace(job, server_address=f"{host}:{port}", server_address_auto=True)
        job = replace(job, id=job.id or uuid.uuid4().hex, create_time=datetime.now(UTC), state=JobState.NOT_STARTED)
        if validate_only:
            return replace(job, id="")
        # A request id is the caller's own: another owner's (or project's) equal id names a different job.
        key = f"{job.project}\x1f{job.owner}\x1f{request_id}" if request_id else ""
        return await asyncio.to_thread(self._store.create_job, job, key)

    async def get(self, job_id: str, caller: Caller) -> Job:
        """The job; NOT_FOUND also when it belongs to a project the caller does not see (its existence is not
        told). Every method that names a job asks here first."""
        if not job_id:
            raise InvalidArgument([FieldViolation("job_id", "is required")])
        job = await asyncio.to_thread(self._store.get_job, job_id)
        if job is None or not caller.sees(job.project):
            raise job_not_found(job_id)
        return job

    async def list(
        self,
        page_size: int,
        after: PageCursor | None,
        state: JobState,
        job_filter: JobFilter | None,
        caller: Caller,
    ) -> tuple[list[Job], bool, int]:
        """A page of the jobs the caller sees, whether more follow, and the revision it reflects: read before the
        page, so every change at or below it is in the page (later ones may be too; their jobs say so)."""
        if page_size < 0:
            raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        revision = await asyncio.to_thread(self._store.current_revision)
        if job_filter is None or not job_filter.clauses:
            jobs = await asyncio.to_thread(self._store.list_jobs, size + 1, after, state, caller.visible)
            return jobs[:size], len(jobs) > size, revision
        page, more = await asyncio.to_thread(filtered_page, self._store, size, after, state, job_filter, caller.visible)
        return page, more, revision

    async def delete(self, job_id: str, caller: Caller) -> None:
        await self.get(job_id, caller)
        if not await asyncio.to_thread(self._store.delete_job, job_id):
            raise job_not_found(job_id)
        await asyncio.to_thread(shutil.rmtree, self._jobs_dir / job_id, True)
