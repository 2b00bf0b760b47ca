"""The launch of a job just moved to IN_PROGRESS: its FL server, then its clients (locally, or through their
agents), followed from before the first process runs; a launch that fails ends the job and stops what it launched,
and a StopTraining during the launch wins (jobs/starting.py). Split from jobs/training.py, which decides when."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import Aborted, DeadlineExceeded, FailedPrecondition, FloristError, quote
from florist_grpc.domain.model import SERVER_SOURCE, Job, JobState, Launch, MetricsEvent, ProcessRef
from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import ClientRun, ServerRun
from florist_grpc.jobs.data_check import DataShape
from florist_grpc.jobs.follower import JobFollower
from florist_grpc.jobs.run import RunningProcess
from florist_grpc.jobs.starting import STOP_MESSAGE, Start, Starts
from florist_grpc.launch.agent_protocol import ClientJob
from florist_grpc.launch.agents import Agents
from florist_grpc.launch.handles import ProcessHandle
from florist_grpc.launch.launcher import LaunchedProcess, Launcher, LaunchSpec, launch_each
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import LOOPBACK, free_service_port, is_loopback, join_host_port, port_is_free, split_host_port
from florist_grpc.store.base import JobStore
from florist_grpc.tls_files import TLSConfig

log = logging.getLogger(__name__)


class LaunchSequence:
    def __init__(
        self,
        store: JobStore,
        follower: JobFollower,
        agents: Agents,
        starts: Starts,
        users: RunUsers,
        redis_address: str,
        jobs_dir: Path,
        timeouts: Timeouts,
        tls: TLSConfig | None,
        launcher: Launcher,
    ) -> None:
        self._store = store
        self._follower = follower
        self._agents = agents
        self.starts = starts
        self._users = users
        self.redis_address = redis_address
        self._jobs_dir = jobs_dir
        self._timeouts = timeouts
        # With a certificate, FL servers of jobs with agent-run clients serve FL traffic over TLS with it.
        self._tls = tls
        self._launcher = launcher  # where the server and agent-less clients run (launch/launcher.py)

    def log_path(self, job_id: str, source_key: str) -> Path:
        return self._jobs_dir / job_id / f"{source_key}.log"

    def model_dir(self, job_id: str) -> Path:
        """Where the FL server saves the job's global models (removed with the job's directory)."""
        return self._jobs_dir / job_id / "models"

    async def run(self, job: Job, shape: DataShape, start: Start) -> tuple[str, list[str]]:
        """Launch a job just moved to IN_PROGRESS; a failed launch ends it (stopping what it launched)."""
        job_id = job.id
        try:
            return await self._launch(job, shape, start)
        except FloristError as exc:
            if start.stop_requested.is_set():  # the stop wins (jobs/starting.py)
                start.stopped.set_result(await self._end(job_id, JobState.CANCELLED, STOP_MESSAGE))
                if isinstance(exc, Aborted):
                    raise
                raise Aborted(f"job {quote(job_id)} was stopped: {exc}") from exc
            await self._end(job_id, JobState.FINISHED_WITH_ERROR, str(exc))
            raise
        except Exception as exc:
            log.exception("launching job %s failed", job_id)
            await self._end(job_id, JobState.FINISHED_WITH_ERROR, f"launch failed: {exc}")
            raise

    async def _end(self, job_id: str, state: JobState, message: str) -> MetricsEvent | None:
        """End a start that failed or was stopped: stop whatever it launched, move the job to `state`."""
        future = self._follower.end(job_id, state, message)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self._timeouts.stop_seconds)
        except (TimeoutError, FloristError):
            log.warning("job %s: cleanup after a failed start did not finish in time", job_id)
            return None

    def _server_address(self, job: Job) -> str:
        if job.server_address_auto:
            host, port = split_host_port(job.server_address)
            bind_host = host if is_loopback(host) else "0.0.0.0"
            if not port_is_free(port, bind_host):
                return job.server_address.removesuffix(f":{port}") + f":{free_service_port(bind_host)}"
        return job.server_address

    async def _launch(self, job: Job, shape: DataShape, start: Start) -> tuple[str, list[str]]:
        training = training_config(job.strategy, job.server_config)  # once, for the server and every client
        server_address = self._server_address(job)
        server_uuid = uuid.uuid4().hex
        client_uuids = [uuid.uuid4().hex for _ in job.clients]
        processes = {SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, server_uuid)}
        for i, client_uuid in enumerate(client_uuids):
            source = replace(job.client_source(i), client_uuid=client_uuid)
            processes[source.key] = RunningProcess(source, client_uuid)
        # Subscribe before anything runs; the subscription also reconciles whatever was written before it.
        self._follower.attach(job.id, processes, {})
        await self.starts.step(start, "attached")
        credentials = await asyncio.to_thread(self._users.create, [server_uuid, *client_uuids])
        redis_address = job.redis_address or self.redis_address
        fl_tls = self._tls if any(c.agent for c in job.clients) else None
        host, port = split_host_port(server_address)
        # Remote clients that all come over their agents' connections (AgentService.Tunnel) are joined to the FL
        # server on this machine's loopback: nothing else needs to reach it. Local clients then dial loopback too,
        # checking a TLS server's certificate for the advertised name.
        remote = [c.agent for c in job.clients if c.agent]
        loopback_only = bool(remote) and all(self._agents.tunnels(agent) for agent in remote)
        on_loopback = loopback_only and not is_loopback(host) and self._launcher.fl_servers_here
        bind = join_host_port(LOOPBACK, port) if on_loopback else self._launcher.server_bind(server_address)
        local_address = join_host_port(LOOPBACK, port) if on_loopback else server_address
        server_run = ServerRun(
            bind_address=bind,
            redis_address=redis_address,
            uuid=server_uuid,
            model=job.model,
            strategy=job.strategy,
            n_clients=len(job.clients),
            training=training,
            tls_cert_file=str(fl_tls.cert_file) if fl_tls else "",
            tls_key_file=str(fl_tls.key_file) if fl_tls else "",
            input_shape=list(shape.input_shape),
            num_classes=shape.num_classes,
            model_config=job.model_config,
            model_dir=str(self.model_dir(job.id)),
            redis_username=credentials[server_uuid].username,
            redis_password=credentials[server_uuid].password,
            cpus=job.resources.cpus,
        )
        server = await self._launcher.launch(
            LaunchSpec(
                job.id,
                SERVER_SOURCE.key,
                "server",
                server_run.to_json(),
                self.log_path(job.id, SERVER_SOURCE.key),
                job.resources,
            )
        )
        server_ref = server.ref
        self._follower.set_handle(job.id, SERVER_SOURCE.key, server)
        await self.starts.step(start, "server launched")
        client_refs = [ProcessRef() for _ in job.clients]
        launch = Launch(server_address, server_uuid, server_ref, client_uuids, client_refs, datetime.now(UTC))
        # Recorded before the clients start, so a restart can find the server even if we die mid-launch.
        await asyncio.to_thread(self._store.record_launch, job.id, launch)
        # Spawned, clients start while the server is still starting: both spend ~1.5 s importing torch and
        # Flower, and a client refused by a server not listening yet dials again (bounded, fl/flower_api.py).
        # Forked from the pool, a client would reach the server before it is bound and wait out that backoff:
        # those start once it is ready.
        # A server that never gets ready still fails the start, and the cleanup stops every process launched.
        if server.clients_after_ready:
            await self._wait_ready(job.id, server_address, server, start)
        # Agent-less clients go first, all in one request to the launcher (its pool forks them back to back). Under
        # a scheduler they start while the server is placed, and read where it runs from its host file; a site's
        # client is told the address itself, once the server is ready.
        scheduled = bool(server.host_file())

        def client_run(i: int, server_address: str) -> ClientRun:
            client = job.clients[i]
            return ClientRun(
                server_address=server_address if client.agent else local_address,
                tls_server_name=host if fl_tls and not client.agent and local_address != server_address else "",
                redis_address=client.redis_address or redis_address,
                uuid=client_uuids[i],
                model=job.model,
                optimizer=job.optimizer,
                client_type=job.client_type,
                # A local client opens the file its data check judged (symlinks resolved, under --data-root),
                # not whatever the path names by now.
                data_path=shape.resolved_paths.get(i, client.data_path),
                training=training,
                device=client.device,
                # Local clients verify a TLS FL server with its own certificate file (the chain up to its CA).
                root_certificates_file=str(fl_tls.cert_file) if fl_tls else "",
                input_shape=list(shape.input_shape),
                num_classes=shape.num_classes,
                model_config=job.model_config,
                label_column=client.label_column,
                redis_username=credentials[client_uuids[i]].username,
                redis_password=credentials[client_uuids[i]].password,
                cpus=job.resources.cpus,
                # Placed by a scheduler, the server says where it runs in this file; the client waits for it (and
                # for a server not listening yet) as long as the start waits for the server.
                server_host_file="" if client.agent else server.host_file(),
                server_host_wait_seconds=self._timeouts.server_ready_seconds,
            )

        async def launched(i: int, handle: ProcessHandle) -> None:
            client_refs[i] = handle.ref
            self._follower.set_handle(job.id, f"client{i}", handle)
            await self.starts.step(start, f"client{i} launched")

        local = [i for i, client in enumerate(job.clients) if not client.agent]
        specs = [
            LaunchSpec(
                job.id,
                f"client{i}",
                "client",
                client_run(i, server_address).to_json(),
                self.log_path(job.id, f"client{i}"),
                job.resources,
            )
            for i in local
        ]
        async with contextlib.aclosing(launch_each(self._launcher, "client", specs)) as started:
            for i in local:
                await launched(i, await anext(started))
        for i in (i for i, client in enumerate(job.clients) if client.agent):
            if scheduled and server_address == launch.server_address:
                # Told where it runs, whether it got ready before the launch came here (sbatch takes its time).
                if not server.advertised_host():
                    await self._wait_ready(job.id, server_address, server, start)
                server_address = f"{server.advertised_host()}:{split_host_port(server_address)[1]}"
            # The agent verifies the FL server with its own --tls-ca and reports to its own Redis.
            launch_at_site = self._agents.launch(
                job.clients[i].agent, client_run(i, server_address), fl_tls is not None, ClientJob.of(job, i)
            )
            await launched(i, await self.starts.unless_stopped(start, launch_at_site))
        launch = replace(launch, client_processes=client_refs)
        await asyncio.to_thread(self._store.record_launch, job.id, launch)
        if not server.clients_after_ready:
            await self._wait_ready(job.id, server_address, server, start)
        if host := server.advertised_host():  # placed by a scheduler: where its clients reached it
            launch = replace(launch, server_address=f"{host}:{split_host_port(server_address)[1]}")
            await asyncio.to_thread(self._store.record_launch, job.id, launch)
        await self.starts.step(start, "ready")
        return server_uuid, client_uuids

    # --- readiness by event (issue 13): the FL server says "ready" once bound (fl/readiness.py) -------------
    async def _wait_ready(self, job_id: str, server_address: str, server: LaunchedProcess, start: Start) -> None:
        """Wait until the FL server accepts connections; fail fast if it exits, DEADLINE_EXCEEDED past the bound.

        A server stopped because the job is already ending (a client failed at once, or a stop) is no failure of
        the start: the job's own end says why.
        """
        await self.starts.step(start, "waiting for the FL server")
        bound = self._timeouts.server_ready_seconds
        try:
            ready = await self.starts.unless_stopped(start, asyncio.wait_for(server.wait_ready(), timeout=bound))
        except TimeoutError:
            raise DeadlineExceeded(
                f"FL server not ready on {server_address} within {bound:g}s", reason="FL_SERVER_NOT_READY"
            ) from None
        if ready or self._follower.stopped_server(job_id):
            return
        # It ended before it was ready; only its exit status may still be on its way.
        status = await asyncio.to_thread(server.wait_exit, self._timeouts.process_stop_grace_seconds)
        tail = server.log_tail()
        raise FailedPrecondition(
            f"FL server {status.describe() if status else 'ended'} before it was ready"
            + (f"; last log lines:\n{tail}" if tail else ""),
            reason="FL_SERVER_EXITED",
        )
