"""The control plane's agents: open sessions by name, and the FL client processes each agent runs for us.

Sessions live on the event loop. The follower's threads see agent-run processes only through `AgentProcess`
(florist_grpc/launch/agent_process.py), which reads the state kept here under a lock and posts stops to the loop.
A client's reports, relayed by its agent, are written to the control plane's own Redis exactly as a local client
writes them (SET key=uuid, PUBLISH channel=uuid): the listener -> follower -> store path is the same for both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    FloristError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from florist_grpc.domain.model import Client, Exit, ProcessRef
from florist_grpc.domain.validation import agent_name_problem
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.launch.agent_process import AgentProcess, RemoteClient
from florist_grpc.launch.agent_session import AgentSession
from florist_grpc.launch.report_relay import ReportRelay
from florist_grpc.launch.wire import from_struct, to_struct
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentView:
    """One agent as ListAgents shows it."""

    name: str
    connected: bool
    connect_time: datetime
    last_seen: datetime
    devices: tuple[str, ...]
    version: str
    data_root: str


class Agents:
    def __init__(self, redis_url: str, timeouts: Timeouts) -> None:
        self._loop = asyncio.get_running_loop()
        self._reports = ReportRelay(redis_url)
        self._timeouts = timeouts
        self._sessions: dict[str, AgentSession] = {}  # open sessions; event loop only
        self._last: dict[str, AgentSession] = {}  # the latest session of every agent seen (ListAgents)
        # Read by the process watcher thread through AgentProcess: guarded by the lock.
        self._lock = threading.Lock()
        self._clients: dict[str, RemoteClient] = {}  # client uuid -> the process an agent runs for us
        self._away_since: dict[str, float] = {}  # agent name -> monotonic time it went (or was expected) away

    # --- sessions (AgentService.Connect) -----------------------------------------------------------------------

    async def serve(
        self,
        bound_name: str | None,
        requests: AsyncIterator[pb.ConnectRequest],
        write: Callable[[pb.ConnectResponse], Awaitable[None]],
    ) -> None:
        """Run one Connect stream to its end. `bound_name`: the name the caller's token allows (None = any)."""
        first = await anext(aiter(requests), None)
        if first is None or not first.HasField("hello"):
            raise InvalidArgument([FieldViolation("hello", "the first message of a session must be hello")])
        name = first.hello.name
        if problem := agent_name_problem(name):
            raise InvalidArgument([FieldViolation("hello.name", problem)])
        if bound_name is not None and name != bound_name:
            raise PermissionDenied(f"this token belongs to agent {bound_name!r}, not {name!r}")
        session = self._open(first.hello)
        reader = asyncio.create_task(self._read(session, requests))
        writer = asyncio.create_task(self._write(session, write))
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            writer.cancel()
            self._close(session, Unavailable(f"agent {name} disconnected"))
        for task in (reader, writer):
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                # The stream broke (the agent went away mid-write, or Redis refused a relayed report): the
                # agent redials and resends its snapshots, so this session just ends.
                log.warning("agent %s: session failed: %r", name, exc)
        if isinstance(session.closed, Aborted):
            raise session.closed

    def _open(self, hello: pb.AgentHello) -> AgentSession:
        # A second session under the same name replaces the first: after a network failure the old stream may
        # look open here long after the agent has redialled, and refusing would lock the site out until then.
        old = self._sessions.get(hello.name)
        if old is not None:
            log.warning("agent %s connected again: closing its previous session", hello.name)
            self._close(old, Aborted(f"agent {hello.name} connected again; this session was replaced"))
        session = AgentSession(hello)
        self._sessions[hello.name] = self._last[hello.name] = session
        session.send(pb.ConnectResponse(welcome=pb.Welcome()))
        known = {c.client_uuid: c for c in hello.clients}
        with self._lock:
            self._away_since.pop(hello.name, None)
            for client_uuid, client in self._clients.items():
                if client.agent != hello.name:
                    continue
                status = known.get(client_uuid)
                if status is None:
                    if client.exit is None:
                        client.exit = Exit(None, f"was lost: agent {hello.name} reconnected without it")
                elif status.running and client.stop_requested:
                    # Stopped while the agent was away (the job ended meanwhile): nothing may outlive its job.
                    session.send(pb.ConnectResponse(stop_client=pb.StopClient(client_uuid=client_uuid)))
            # Exits of clients the agent knows arrive as process_exited after their last reports.
        log.info("agent %s connected (version %s, devices %s)", hello.name, hello.version, list(hello.devices))
        return session

    def _close(self, session: AgentSession, error: FloristError) -> None:
        session.close(error)
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
            with self._lock:
                self._away_since[session.name] = time.monotonic()
            log.warning("agent %s: session ended (%s)", session.name, error)

    async def _write(self, session: AgentSession, write: Callable[[pb.ConnectResponse], Awaitable[None]]) -> None:
        async for message in session.outgoing():
            await write(message)

    async def _read(self, session: AgentSession, requests: AsyncIterator[pb.ConnectRequest]) -> None:
        async for message in requests:
            session.seen()
            kind = message.WhichOneof("message")
            if kind == "report_change":
                await self._relay_report(session.name, message.report_change)
            elif kind == "process_exited":
                self._exited(session.name, message.process_exited)
            elif kind == "hello":
                log.warning("agent %s sent hello twice; ignored", session.name)
            else:
                session.deliver(message)

    async def _relay_report(self, agent: str, change: pb.ReportChange) -> None:
        with self._lock:
            client = self._clients.get(change.client_uuid)
        if client is None or client.agent != agent:
            log.warning("agent %s reported for client %s, which it does not run; dropped", agent, change.client_uuid)
            return
        await self._reports.relay(agent, change.client_uuid, change.report_json)

    def _exited(self, agent: str, exited: pb.ProcessExited) -> None:
        with self._lock:
            client = self._clients.get(exited.client_uuid)
            if client is None or client.agent != agent or client.exit is not None:
                return
            client.log_tail = exited.log_tail
            client.exit = Exit(exited.exit_code if exited.exit_code_known else None)

    # --- what jobs ask of agents -------------------------------------------------------------------------------

    def session(self, name: str) -> AgentSession:
        session = self._sessions.get(name)
        if session is None:
            raise FailedPrecondition(f"agent {name} is not connected")
        return session

    async def check_data(self, name: str, data_path: str) -> str:
        """'' if `data_path` is inside agent `name`'s data root and readable there, else why not."""
        reply = await self.session(name).request(
            lambda rid: pb.ConnectResponse(check_data=pb.CheckData(request_id=rid, data_path=data_path)),
            self._timeouts.agent_call_seconds,
        )
        if reply.HasField("request_failed"):
            return reply.request_failed.message
        return "" if reply.data_check_result.ok else reply.data_check_result.problem

    async def probe_data(self, index: int, client: Client) -> dict[str, Any] | None:
        """The summary of an agent-run client's data file, read on its agent's machine (None if unreachable)."""
        try:
            reply = await self.session(client.agent).request(
                lambda rid: pb.ConnectResponse(
                    check_data=pb.CheckData(
                        request_id=rid, data_path=client.data_path, probe=True, label_column=client.label_column
                    )
                ),
                self._timeouts.data_check_seconds + self._timeouts.agent_call_seconds,
            )
        except FloristError as exc:
            log.warning("agent %s could not probe client %d's data: %s", client.agent, index, exc)
            return None
        if reply.HasField("request_failed"):
            return {"problems": [reply.request_failed.message]}
        result = reply.data_check_result
        if not result.ok:
            return {"problems": [result.problem]}
        return from_struct(result.summary)

    async def launch(self, name: str, run: ClientRun, device: str, tls: bool) -> AgentProcess:
        """Have agent `name` start the FL client `run` (its data path is relative to the agent's data root)."""
        session = self.session(name)
        with self._lock:
            self._clients[run.uuid] = RemoteClient(name)
        reply = await session.request(
            lambda rid: pb.ConnectResponse(
                launch_client=pb.LaunchClient(
                    request_id=rid,
                    client_uuid=run.uuid,
                    server_address=run.server_address,
                    data_path=run.data_path,
                    model=run.model,
                    optimizer=run.optimizer,
                    client_type=run.client_type,
                    server_config=to_struct(run.training.to_server_config()),
                    device=device,
                    tls=tls,
                    input_shape=run.input_shape,
                    num_classes=run.num_classes,
                    model_config=to_struct(run.model_config),
                    label_column=run.label_column,
                )
            ),
            self._timeouts.agent_call_seconds,
        )
        if reply.HasField("request_failed"):
            raise FailedPrecondition(f"agent {name} could not start the client: {reply.request_failed.message}")
        started = reply.process_started
        ref = ProcessRef(pid=started.pid, log_path=started.log_path, agent_address=name)
        return AgentProcess(self, run.uuid, ref)

    def adopt(self, name: str, client_uuid: str, ref: ProcessRef) -> AgentProcess:
        """A process an agent ran for us before the control plane restarted; it counts as running until the
        agent says otherwise (or stays away longer than the grace). Thread-safe."""
        with self._lock:
            self._clients.setdefault(client_uuid, RemoteClient(name))
            if name not in self._sessions:
                self._away_since.setdefault(name, time.monotonic())
        return AgentProcess(self, client_uuid, ref)

    async def stream_log(
        self, name: str, client_uuid: str, offset: int, follow: bool
    ) -> AsyncIterator[tuple[str, int]]:
        session = self._sessions.get(name)
        if session is None:
            raise Unavailable(f"agent {name} is not connected")
        async for chunk in session.read_log(client_uuid, offset, follow):
            yield chunk

    def list(self) -> list[AgentView]:
        return [
            AgentView(
                name=s.name,
                connected=self._sessions.get(s.name) is s,
                connect_time=s.connect_time,
                last_seen=s.last_seen,
                devices=tuple(s.hello.devices),
                version=s.hello.version,
                data_root=s.hello.data_root,
            )
            for s in sorted(self._last.values(), key=lambda s: s.name)
        ]

    # --- called by AgentProcess, from the follower's threads ---------------------------------------------------

    def exit_of(self, client_uuid: str) -> Exit | None:
        grace = self._timeouts.agent_away_grace_seconds
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or client.exit is not None:
                return client.exit if client else Exit(None, "was never launched by an agent")
            away = self._away_since.get(client.agent)
            if away is None or time.monotonic() - away <= grace:
                return None
            client.exit = Exit(None, f"was lost: agent {client.agent} stayed disconnected for more than {grace:g}s")
            client.stop_requested = True  # should the agent come back with it still running
            return client.exit

    def log_tail(self, client_uuid: str) -> str:
        with self._lock:
            client = self._clients.get(client_uuid)
            return client.log_tail if client else ""

    def request_stop(self, client_uuid: str) -> None:
        self._loop.call_soon_threadsafe(self._stop, client_uuid)

    def _stop(self, client_uuid: str) -> None:
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or (client.exit is not None and not client.stop_requested):
                return
            client.stop_requested = True  # sent again when the agent reconnects, should it be away now
        session = self._sessions.get(client.agent)
        if session is not None:
            session.send(pb.ConnectResponse(stop_client=pb.StopClient(client_uuid=client_uuid)))

    def close_sessions(self) -> None:
        """End every session (agents redial with backoff): shutdown need not wait for these endless streams."""
        for session in list(self._sessions.values()):
            self._close(session, Unavailable("the control plane is shutting down"))

    async def close(self) -> None:
        self.close_sessions()
        await self._reports.close()
