"""What one accepted agent session does: answer the control plane's requests (launch, stop, check data, read a
log) and send, unasked, its clients' reports and exits and a heartbeat carrying the agent's health.

A launch or data check the site's policy excludes is refused here whatever the control plane decided (defence in
depth: a control plane that is wrong, older or not ours cannot run a job the site does not allow). Every launch,
stop and data check, refused or not, is one line of the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from florist_grpc.agent.audit import AuditLog
from florist_grpc.agent.clients import SiteClients
from florist_grpc.agent.reports import SiteReports
from florist_grpc.agent.tunnels import Tunnels
from florist_grpc.config import AgentSettings
from florist_grpc.domain.catalog import BUILTIN_MODELS
from florist_grpc.domain.errors import FloristError, PermissionDenied, Unavailable
from florist_grpc.domain.site_policy import policy_refusal
from florist_grpc.launch.agent_codec import request_failed
from florist_grpc.launch.agent_protocol import (
    AgentMessage,
    CancelRequest,
    CheckData,
    ClientJob,
    Command,
    DataCheckResult,
    Heartbeat,
    LaunchClient,
    LogChunk,
    ProcessStarted,
    ReadLog,
    ReportChange,
    StopClient,
    Unreadable,
)
from florist_grpc.launch.logs import follow_log
from florist_grpc.launch.probe import ProbeFailed

log = logging.getLogger(__name__)

# How often the agent looks at its client processes for exits (and at its own health, to report a change).
EXIT_POLL_SECONDS = 0.2


class Exchange:
    """What one accepted session does: answer requests, send reports and exits, heartbeat."""

    def __init__(
        self,
        clients: SiteClients,
        reports: SiteReports,
        settings: AgentSettings,
        send: Callable[[AgentMessage], None],
        tasks: dict[str, asyncio.Task[Any]],
        health: Callable[[], str],
        said_problem: str,
        audit: AuditLog,
        tunnels: Tunnels | None = None,
    ) -> None:
        self._audit = audit
        self._tunnels = tunnels  # None: --fl-direct
        self._health = health  # the agent's problem now ('' = healthy)
        self._said_problem = said_problem  # the problem the control plane last heard (in hello, then heartbeats)
        self._clients = clients
        self._reports = reports
        self._settings = settings
        self._send = send
        self._tasks = tasks
        self._sent: dict[str, str] = {}  # the last report sent per client in this session

    async def _send_report(self, uuid: str) -> None:
        body = await self._reports.read(uuid)
        if body and body != self._sent.get(uuid):
            self._sent[uuid] = body
            self._send(ReportChange(uuid, body))

    async def _send_exit(self, uuid: str) -> None:
        if self._tunnels is not None:
            self._tunnels.close(uuid)  # nothing connects for an ended client
        await self._send_report(uuid)  # its last report first: the control plane judges the exit by it
        self._send(self._clients.exited(uuid))

    async def pump(self) -> None:
        """Everything known so far, then changes as they come; a heartbeat when idle."""
        self._reports.mark_changed(u.client_uuid for u in self._clients.known())
        for uuid in self._clients.ended():
            await self._send_exit(uuid)
        heartbeat_due = asyncio.get_running_loop().time() + self._settings.heartbeat_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                for uuid in await asyncio.wait_for(self._reports.changed(), EXIT_POLL_SECONDS):
                    await self._send_report(uuid)
            for uuid, _ in await asyncio.to_thread(self._clients.poll):
                await self._send_exit(uuid)
            now = asyncio.get_running_loop().time()
            if now >= heartbeat_due or self._health() != self._said_problem:  # a change is said at once
                heartbeat_due = now + self._settings.heartbeat_seconds
                self._said_problem = self._health()
                self._send(Heartbeat(self._said_problem))

    def _spawn(self, key: str, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    def handle(self, command: Command | Unreadable) -> None:
        if isinstance(command, LaunchClient):
            self._spawn(command.request_id, self._launch(command))
        elif isinstance(command, StopClient):
            self._spawn(f"stop {command.client_uuid}", self._stop(command.client_uuid))
        elif isinstance(command, CheckData):
            self._spawn(command.request_id, self._check_data(command))
        elif isinstance(command, ReadLog):
            self._spawn(command.request_id, self._read_log(command))
        elif isinstance(command, CancelRequest):
            task = self._tasks.get(command.request_id)
            if task is not None:
                task.cancel()
        elif isinstance(command, Unreadable):
            self._send(request_failed(command.request_id, command.error))

    def _refusal(self, job: ClientJob, model: str) -> str:
        """Why this site's policy refuses a client of `job` running `model` ('' when it allows it)."""
        name, policy = self._settings.name, self._settings.policy
        refusal = policy_refusal(name, policy, job.project, model, model in BUILTIN_MODELS)
        return refusal.message if refusal is not None else ""

    async def _launch(self, request: LaunchClient) -> None:
        client_uuid, job = request.run.uuid, request.job
        where = {"client": client_uuid, "data_path": request.run.data_path}
        if refusal := self._refusal(job, request.run.model):
            self._audit.record("launch", job, "refused", reason=refusal, **where)
            self._send(request_failed(request.request_id, PermissionDenied(refusal)))
            return
        self._reports.follow([client_uuid])  # before it runs: its first report is not missed
        try:
            credentials = await asyncio.to_thread(self._reports.credentials, client_uuid)
            tunnel = await self._tunnels.open(client_uuid) if self._tunnels is not None else ""
            ref = await asyncio.to_thread(
                self._clients.launch, request, self._reports.address, credentials, self._settings.tls_ca, tunnel
            )
        except BaseException as exc:
            if self._tunnels is not None and not self._clients.running(client_uuid):
                self._tunnels.close(client_uuid)  # opened for a client that never ran
            if not isinstance(exc, Exception):
                raise  # cancelled by the control plane, which expects no answer
            # The site's own failures (its Redis gone, a fork refused) are answered too: the control plane waits
            # for an answer, and a lost one would read as a timeout instead of what happened.
            error = exc if isinstance(exc, FloristError) else self._site_failure(exc)
            self._audit.record("launch", job, "failed", reason=str(error), **where)
            self._send(request_failed(request.request_id, error))
            return
        self._audit.record("launch", job, "ok", reason=f"pid {ref.pid}", **where)
        self._send(ProcessStarted(request.request_id, client_uuid, ref.pid, ref.log_path))

    def _site_failure(self, exc: Exception) -> Unavailable:
        log.error("launch failed on this site", exc_info=exc)  # the traceback stays here, on the site
        return Unavailable(f"site {self._settings.name} could not start the client: {type(exc).__name__}: {exc}")

    async def _stop(self, client_uuid: str) -> None:
        running = self._clients.running(client_uuid)
        await asyncio.to_thread(self._clients.stop, client_uuid)
        outcome = "ok" if running else "not running"
        self._audit.record("stop", self._clients.job_of(client_uuid), outcome, client=client_uuid)

    async def _check_data(self, check: CheckData) -> None:
        what = "probe_data" if check.probe else "check_data"
        if refusal := self._refusal(check.job, check.job.model):
            self._audit.record(what, check.job, "refused", data_path=check.data_path, reason=refusal)
            self._send(DataCheckResult(check.request_id, ok=False, problem=refusal))
            return
        problem = self._clients.check(check.data_path)
        result = DataCheckResult(check.request_id, ok=not problem, problem=problem)
        if check.probe and not problem:
            try:
                summary = await asyncio.to_thread(self._clients.probe, check.data_path, check.label_column)
                result = DataCheckResult(check.request_id, ok=True, summary=summary)
            except ProbeFailed as exc:
                result = DataCheckResult(check.request_id, ok=False, problem=str(exc))
        # The outcome, never the summary: it describes the data (label ranges, counts).
        outcome = "ok" if result.ok else "failed"
        self._audit.record(what, check.job, outcome, data_path=check.data_path, reason=result.problem)
        self._send(result)

    async def _read_log(self, request: ReadLog) -> None:
        try:
            path = self._clients.log_path(request.client_uuid)
        except FloristError as exc:
            self._send(request_failed(request.request_id, exc))
            return

        async def finished() -> bool:
            return not self._clients.running(request.client_uuid)

        offset = request.offset
        async for text, offset in follow_log(path, request.offset, request.follow, finished):
            self._send(LogChunk(request.request_id, text, offset))
        self._send(LogChunk(request.request_id, next_offset=offset, end=True))
