"""The control plane's agents: open sessions by name, and the FL client processes each agent runs for us.

Sessions live on the event loop. The follower's threads see agent-run processes only through `AgentProcess`
(launch/agent_process.py), which reads their state (launch/remote_clients.py) and posts stops to the loop. An agent
heartbeats while it has nothing else to say: one silent past `agent_silence_seconds` has its session closed, so it
shows as disconnected and its clients count as away. Messages are plain values (launch/agent_protocol.py), converted
at the stream. A client's reports, relayed by its agent, are written to the control plane's own Redis exactly as a
local client writes them (SET key=uuid, PUBLISH channel=uuid): one listener -> follower -> store path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    FloristError,
    InvalidArgument,
    Unavailable,
)
from florist_grpc.domain.model import Exit, Job, ProcessRef
from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.domain.validation import agent_name_problem
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.launch.agent_process import AgentProcess
from florist_grpc.launch.agent_protocol import (
    AgentHello,
    AgentMessage,
    CheckData,
    ClientJob,
    Command,
    DataCheckResult,
    Heartbeat,
    LaunchClient,
    ProcessExited,
    ProcessStarted,
    ReportChange,
    RequestFailed,
    StopClient,
    Welcome,
)
from florist_grpc.launch.agent_session import AgentSession, AgentView
from florist_grpc.launch.remote_clients import RemoteClients
from florist_grpc.launch.report_relay import ReportRelay
from florist_grpc.net import local_connect_host, split_host_port

log = logging.getLogger(__name__)

# How long after a tunnel broke its agent's session is looked at: both end when their connection drops.
TUNNEL_BREAK_SECONDS = 2.0


class Agents:
    def __init__(self, redis_url: str, timeouts: Timeouts, fl_servers_here: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._fl_servers_here = fl_servers_here  # the launcher's (launch/launcher.py)
        self._reports = ReportRelay(redis_url)
        self._timeouts = timeouts
        self._sessions: dict[str, AgentSession] = {}  # open sessions; event loop only
        self._last: dict[str, AgentSession] = {}  # the latest session of every agent seen (ListAgents)
        self._clients = RemoteClients(timeouts.agent_away_grace_seconds)  # read by the follower's threads too
        self._silence = self._loop.create_task(self._close_silent_sessions())
        # Told each agent that connects (the queue: a site's capacity is back). Event loop, must not block.
        self.on_connect: list[Callable[[str], None]] = []

    # --- sessions (AgentService.Connect) -----------------------------------------------------------------------

    async def serve(
        self,
        first: AgentMessage | None,
        requests: AsyncIterator[AgentMessage | None],
        write: Callable[[Command], Awaitable[None]],
    ) -> None:
        """Run one Connect stream to its end: `first` is its first message (None: none came, or one of a kind
        this version does not know), already admitted by the caller (api/agent_service.py checks the token),
        `requests` the rest."""
        if not isinstance(first, AgentHello):
            raise InvalidArgument([FieldViolation("hello", "the first message of a session must be hello")])
        name = first.name
        if problem := agent_name_problem(name):
            raise InvalidArgument([FieldViolation("hello.name", problem)])
        session = self._open(first)
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

    def _open(self, hello: AgentHello) -> AgentSession:
        # A second session under the same name replaces the first: after a network failure the old stream may
        # look open here long after the agent has redialled, and refusing would lock the site out until then.
        old = self._sessions.get(hello.name)
        if old is not None:
            log.warning("agent %s connected again: closing its previous session", hello.name)
            self._close(old, Aborted(f"agent {hello.name} connected again; this session was replaced"))
        session = AgentSession(hello)
        self._sessions[hello.name] = self._last[hello.name] = session
        session.send(Welcome())
        # Stopped while the agent was away (the job ended meanwhile): nothing may outlive its job.
        for client_uuid in self._clients.came_back(hello.name, hello.clients):
            session.send(StopClient(client_uuid))
        log.info("agent %s connected (version %s, devices %s)", hello.name, hello.version, list(hello.devices))
        session.report_health(hello.problem)
        for listener in self.on_connect:
            listener(hello.name)
        return session

    def _close(self, session: AgentSession, error: FloristError, away_since: float | None = None) -> None:
        """End `session`; its agent counts as away from `away_since` (monotonic; default now) if it was current."""
        session.close(error)
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
            self._clients.went_away(session.name, time.monotonic() if away_since is None else away_since)
            log.warning("agent %s: session ended (%s)", session.name, error)

    async def _write(self, session: AgentSession, write: Callable[[Command], Awaitable[None]]) -> None:
        async for message in session.outgoing():
            await write(message)

    async def _read(self, session: AgentSession, requests: AsyncIterator[AgentMessage | None]) -> None:
        async for message in requests:
            session.seen()
            if isinstance(message, ReportChange):
                await self._relay_report(session.name, message)
            elif isinstance(message, ProcessExited):
                self._exited(session.name, message)
            elif isinstance(message, AgentHello):
                log.warning("agent %s sent hello twice; ignored", session.name)
            elif isinstance(message, Heartbeat):
                session.report_health(message.problem)
            elif message is not None:
                session.deliver(message)

    async def _relay_report(self, agent: str, change: ReportChange) -> None:
        if not self._clients.runs(agent, change.client_uuid):
            log.warning("agent %s reported for client %s, which it does not run; dropped", agent, change.client_uuid)
            return
        await self._reports.relay(agent, change.client_uuid, change.report_json)

    def _exited(self, agent: str, exited: ProcessExited) -> None:
        self._clients.exited(agent, exited.client_uuid, exited.exit_code, exited.log_tail)

    async def _close_silent_sessions(self) -> None:
        """Close every session whose agent said nothing (not even a heartbeat) for longer than its bound."""
        bound = self._timeouts.agent_silence_seconds
        while True:
            await asyncio.sleep(min(max(bound / 4, 0.05), 5.0))
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if now - session.last_seen_monotonic > bound:
                    # Away since it was last heard from, not since this check noticed.
                    silent = Unavailable(f"agent {session.name} was silent for more than {bound:g}s")
                    self._close(session, silent, away_since=session.last_seen_monotonic)

    # --- what jobs ask of agents -------------------------------------------------------------------------------

    def session(self, name: str) -> AgentSession:
        session = self._sessions.get(name)
        if session is None:
            raise FailedPrecondition(f"agent {name} is not connected")
        return session

    async def check_data(self, name: str, data_path: str, job: ClientJob) -> str:
        """'' if `data_path` is inside agent `name`'s data root and readable there (for a client of `job`: the
        agent's policy may refuse it), else why not."""
        reply = await self.session(name).request(
            lambda rid: CheckData(rid, data_path, job=job), DataCheckResult, self._timeouts.agent_call_seconds
        )
        if isinstance(reply, RequestFailed):
            return reply.message
        return "" if reply.ok else reply.problem

    async def probe_data(self, job: Job, index: int) -> dict[str, Any] | None:
        """The summary of an agent-run client's data file, read on its agent's machine (None if unreachable)."""
        client = job.clients[index]
        asked = ClientJob.of(job, index)
        try:
            reply = await self.session(client.agent).request(
                lambda rid: CheckData(rid, client.data_path, True, client.label_column, asked),
                DataCheckResult,
                self._timeouts.data_check_seconds + self._timeouts.agent_call_seconds,
            )
        except FloristError as exc:
            log.warning("agent %s could not probe client %d's data: %s", client.agent, index, exc)
            return None
        if isinstance(reply, RequestFailed):
            return {"problems": [reply.message]}
        if not reply.ok:
            return {"problems": [reply.problem]}
        return reply.summary

    async def launch(self, name: str, run: ClientRun, tls: bool, job: ClientJob) -> AgentProcess:
        """Have agent `name` start the FL client `run` of `job` (its data path is relative to the agent's data
        root; its Redis and CA file are the agent's own: see LaunchClient)."""
        session = self.session(name)
        self._clients.launching(run.uuid, name, run.server_address)
        try:
            reply = await session.request(
                lambda rid: LaunchClient(rid, run, tls, job), ProcessStarted, self._timeouts.agent_call_seconds
            )
        except BaseException:
            # Unanswered (or the start was stopped meanwhile): the agent may still start it, and must stop it.
            self._stop(run.uuid)
            raise
        if isinstance(reply, RequestFailed):
            raise FailedPrecondition(f"agent {name} could not start the client: {reply.message}")
        ref = ProcessRef(pid=reply.pid, log_path=reply.log_path, agent_address=name)
        return AgentProcess(self, run.uuid, ref)

    def adopt(self, name: str, client_uuid: str, ref: ProcessRef, server_address: str = "") -> AgentProcess:
        """A process an agent ran for us before the control plane restarted; it counts as running until the
        agent says otherwise (or stays away longer than the grace). Thread-safe."""
        self._clients.adopt(client_uuid, name, name in self._sessions, server_address)
        return AgentProcess(self, client_uuid, ref)

    async def stream_log(
        self, name: str, client_uuid: str, offset: int, follow: bool
    ) -> AsyncIterator[tuple[str, int]]:
        session = self._sessions.get(name)
        if session is None:
            raise Unavailable(f"agent {name} is not connected")
        async for chunk in session.read_log(client_uuid, offset, follow):
            yield chunk

    def tunnel_target(self, name: str, client_uuid: str) -> tuple[str, int]:
        """Where a tunnel of agent `name` for this client is joined: its FL server, reached on this machine
        (NOT_FOUND / PERMISSION_DENIED for a client not launched on that agent)."""
        server_address = self._clients.server_address_for(name, client_uuid)
        host, port = split_host_port(server_address)
        return (local_connect_host(server_address) if self._fl_servers_here else host), port

    def tunnel_broke(self, name: str, client_uuid: str) -> None:
        """A tunnel of agent `name` ended abruptly: its client's FL connection is lost with its agent's connection
        (one HTTP/2 connection: both break together, in either order) unless the session shows it is alive. Said at
        once, as its FL server may fail the round at once; a client killed meanwhile is named for that instead."""
        session = self._sessions.get(name)
        reason = f"lost its FL connection: agent {name}'s connection to the control plane dropped"
        self._clients.lose_connection(client_uuid, reason, dropped=session is None)
        broke_at = time.monotonic()

        def unless_alive() -> None:
            if session is None or session.closed is not None:
                pass  # the connection did drop
            elif session.last_seen_monotonic > broke_at:  # the agent spoke since: only the tunnel ended
                self._clients.lose_connection(client_uuid, "", only=reason)
            else:  # open but silent: its end can take more than a moment to be noticed on a loaded machine
                self._loop.call_later(TUNNEL_BREAK_SECONDS, unless_alive)

        self._loop.call_later(TUNNEL_BREAK_SECONDS, unless_alive)

    def connection_lost(self, client_uuid: str) -> str:
        return self._clients.connection_lost(client_uuid)

    def tunnels(self, name: str) -> bool:
        """Agent `name` is connected and carries its clients' FL traffic over Tunnel (not `--fl-direct`)."""
        session = self._sessions.get(name)
        return session is not None and not session.hello.fl_direct

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
                problem=s.problem,
                max_clients=s.hello.max_clients,
                policy=SitePolicy(s.hello.allowed_projects, s.hello.allowed_models),
            )
            for s in sorted(self._last.values(), key=lambda s: s.name)
        ]

    # --- called by AgentProcess, from the follower's threads ---------------------------------------------------

    def exit_of(self, client_uuid: str) -> Exit | None:
        return self._clients.exit_of(client_uuid)

    def log_tail(self, client_uuid: str) -> str:
        return self._clients.log_tail(client_uuid)

    def request_stop(self, client_uuid: str) -> None:
        self._loop.call_soon_threadsafe(self._stop, client_uuid)

    def _stop(self, client_uuid: str) -> None:
        agent = self._clients.stop(client_uuid)  # sent again when the agent reconnects, should it be away now
        session = self._sessions.get(agent) if agent is not None else None
        if session is not None:
            session.send(StopClient(client_uuid))

    def close_sessions(self) -> None:
        """End every session (agents redial with backoff): shutdown need not wait for these endless streams."""
        for session in list(self._sessions.values()):
            self._close(session, Unavailable("the control plane is shutting down"))

    async def close(self) -> None:
        self._silence.cancel()
        self.close_sessions()
        await self._reports.close()
