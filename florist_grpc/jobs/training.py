"""StartTraining, StopTraining and restart recovery: the launch sequence around the follower."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import DeadlineExceeded, FailedPrecondition, FloristError, NotFound
from florist_grpc.domain.model import SERVER_SOURCE, Job, JobState, Launch, MetricsEvent, ProcessRef
from florist_grpc.fl.run_config import ClientRun, ServerRun
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.run import RunningProcess
from florist_grpc.launch.agent_client import AgentClients
from florist_grpc.launch.handles import LocalProcess, ProcessHandle, start_local
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.metrics.hub import EventHub
from florist_grpc.net import (
    bind_address,
    free_port,
    is_loopback,
    port_is_free,
    redis_address_of,
    split_host_port,
)
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)


class Trainer:
    def __init__(
        self,
        store: JobStore,
        follower: JobFollower,
        hub: EventHub,
        agents: AgentClients,
        redis_url: str,
        data_dir: Path,
        timeouts: Timeouts,
        pool: LauncherPool | None = None,
    ) -> None:
        self._store = store
        self._follower = follower
        self._hub = hub
        self._agents = agents
        self.redis_address = redis_address_of(redis_url)
        self._jobs_dir = data_dir.resolve() / "jobs"
        self._timeouts = timeouts
        self._pool = pool  # FL processes are forked from it when it is up (launch/pool.py)

    def log_path(self, job_id: str, source_key: str) -> Path:
        return self._jobs_dir / job_id / f"{source_key}.log"

    async def start(self, job_id: str) -> tuple[str, list[str]]:
        job = await asyncio.to_thread(self._store.get_job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        event = await asyncio.to_thread(
            self._store.transition, job_id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC)
        )
        if event is None:
            current = await asyncio.to_thread(self._store.get_job, job_id)
            state = current.state.name if current else "deleted"
            raise FailedPrecondition(f"job {job_id} is {state}; only a NOT_STARTED job can be started")
        self._hub.publish(event)
        try:
            return await self._launch(job)
        except FloristError as exc:
            await self._fail(job_id, str(exc))
            raise
        except Exception as exc:
            log.exception("launching job %s failed", job_id)
            await self._fail(job_id, f"launch failed: {exc}")
            raise

    async def _fail(self, job_id: str, message: str) -> None:
        future = self._follower.end(job_id, JobState.FINISHED_WITH_ERROR, message)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout=self._timeouts.start_cleanup_seconds)
        except (TimeoutError, FloristError):
            log.warning("job %s: cleanup after a failed start did not finish in time", job_id)

    def _server_address(self, job: Job) -> str:
        if job.server_address_auto:
            host, port = split_host_port(job.server_address)
            if not port_is_free(port, host if is_loopback(host) else "0.0.0.0"):
                return job.server_address.removesuffix(f":{port}") + f":{free_port()}"
        return job.server_address

    async def _launch(self, job: Job) -> tuple[str, list[str]]:
        server_address = self._server_address(job)
        server_uuid = uuid.uuid4().hex
        client_uuids = [uuid.uuid4().hex for _ in job.clients]
        processes = {SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, server_uuid)}
        for i, client_uuid in enumerate(client_uuids):
            source = replace(job.client_source(i), client_uuid=client_uuid)
            processes[source.key] = RunningProcess(source, client_uuid)
        # Subscribe before anything runs; the subscription also reconciles whatever was written before it.
        self._follower.attach(job.id, processes, {})
        redis_address = job.redis_address or self.redis_address
        server_run = ServerRun(
            bind_address=bind_address(server_address),
            redis_address=redis_address,
            uuid=server_uuid,
            model=job.model,
            strategy=job.strategy,
            n_clients=len(job.clients),
            server_config=job.server_config,
        )
        server = await asyncio.to_thread(
            start_local, "server", server_run.to_json(), self.log_path(job.id, SERVER_SOURCE.key), self._pool
        )
        server_ref = server.ref
        self._follower.set_handle(job.id, SERVER_SOURCE.key, server)
        client_refs = [ProcessRef() for _ in job.clients]
        launch = Launch(server_address, server_uuid, server_ref, client_uuids, client_refs, datetime.now(UTC))
        # Recorded before the clients start, so a restart can find the server even if we die mid-launch.
        await asyncio.to_thread(self._store.record_launch, job.id, launch)
        # Spawned, clients start while the server is still starting: both spend ~1.5 s importing torch and
        # Flower, and clients retry connecting (bounded). Forked from the pool, a client would reach the server
        # before it is bound and wait out Flower's retry backoff (seconds): those start once it is ready.
        # A server that never gets ready still fails the start, and the cleanup stops every process launched.
        if server.forked:
            await self._wait_ready(job.id, server_address, server)
        for i, client in enumerate(job.clients):
            run = ClientRun(
                server_address=server_address,
                redis_address=client.redis_address or redis_address,
                uuid=client_uuids[i],
                model=job.model,
                optimizer=job.optimizer,
                client_type=job.client_type,
                data_path=client.data_path,
                server_config=job.server_config,
            )
            handle: ProcessHandle
            if client.service_address:
                handle = await self._agents.start_client(client.service_address, run)
            else:
                handle = await asyncio.to_thread(
                    start_local, "client", run.to_json(), self.log_path(job.id, f"client{i}"), self._pool
                )
            client_refs[i] = handle.ref
            self._follower.set_handle(job.id, f"client{i}", handle)
        await asyncio.to_thread(self._store.record_launch, job.id, replace(launch, client_processes=client_refs))
        if not server.forked:
            await self._wait_ready(job.id, server_address, server)
        return server_uuid, client_uuids

    # --- readiness by event (issue 13): the FL server says "ready" once bound (fl/readiness.py) -------------
    async def _wait_ready(self, job_id: str, server_address: str, server: LocalProcess) -> None:
        """Wait until the FL server accepts connections; fail fast if it exits, DEADLINE_EXCEEDED past the bound.

        A server stopped because the job is already ending (a client failed at once, or a stop) is no failure of
        the start: the job's own end says why.
        """
        bound = self._timeouts.server_ready_seconds
        try:
            ready = await asyncio.wait_for(server.wait_ready(), timeout=bound)
        except TimeoutError:
            raise DeadlineExceeded(f"FL server not ready on {server_address} within {bound:g}s") from None
        if ready or self._follower.stopped_server(job_id):
            return
        # It ended before it was ready; only its exit status may still be on its way.
        status = await asyncio.to_thread(server.wait_exit, self._timeouts.process_stop_grace_seconds)
        tail = server.log_tail()
        raise FailedPrecondition(
            f"FL server {status.describe() if status else 'ended'} before it was ready"
            + (f"; last log lines:\n{tail}" if tail else "")
        )

    async def stop(self, job_id: str) -> MetricsEvent | None:
        future = self._follower.end(job_id, JobState.CANCELLED, "stopped by StopTraining")
        return await asyncio.wrap_future(future)
