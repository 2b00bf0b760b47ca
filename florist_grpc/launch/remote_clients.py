"""The client processes agents run for the control plane, as their agents' messages describe them.

Written on the event loop (launch/agents.py, from the agents' sessions), read by the follower's threads through
AgentProcess (launch/agent_process.py): every access holds the one lock, and nothing here touches the network.
An agent that went away (its session ended, or it fell silent past its heartbeat bound) has `agent_away_grace`
seconds to come back; past that, its clients count as lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from florist_grpc.domain.errors import NotFound, PermissionDenied, quote
from florist_grpc.domain.model import Exit
from florist_grpc.launch.agent_protocol import KnownClient


@dataclass
class RemoteClient:
    """What the control plane knows of one client process an agent runs."""

    agent: str
    # host:port of its job's FL server, as advertised (where its tunnelled connections are joined to).
    server_address: str = ""
    exit: Exit | None = None
    log_tail: str = ""
    stop_requested: bool = False
    connection_lost: str = ""  # why its tunnelled FL connection broke with its agent's connection ('' if not)
    connection_dropped: bool = False  # and that connection is known to have ended since (not only the tunnel)


class RemoteClients:
    def __init__(self, away_grace: float) -> None:
        self._away_grace = away_grace
        self._lock = threading.Lock()
        self._clients: dict[str, RemoteClient] = {}  # client uuid -> the process an agent runs for us
        self._away_since: dict[str, float] = {}  # agent name -> monotonic time it went (or was expected) away

    def launching(self, client_uuid: str, agent: str, server_address: str) -> None:
        """Agent `agent` is asked to start this client, of the job whose FL server is at `server_address`."""
        with self._lock:
            self._clients[client_uuid] = RemoteClient(agent, server_address)

    def adopt(self, client_uuid: str, agent: str, connected: bool, server_address: str = "") -> None:
        """A client an agent ran for us before the control plane restarted: running until its agent says
        otherwise, or stays away past the grace (counted from now when it is not connected)."""
        with self._lock:
            self._clients.setdefault(client_uuid, RemoteClient(agent, server_address))
            if not connected:
                self._away_since.setdefault(agent, time.monotonic())

    def came_back(self, agent: str, known: Iterable[KnownClient]) -> list[str]:
        """Agent `agent` said hello listing the clients it knows: those it no longer has are lost; returns the
        running ones whose stop it must get (again), should they have been stopped while it was away."""
        running = {c.client_uuid: c.running for c in known}
        to_stop = []
        with self._lock:
            self._away_since.pop(agent, None)
            for client_uuid, client in self._clients.items():
                if client.agent != agent:
                    continue
                if client_uuid not in running:
                    if client.exit is None:
                        client.exit = Exit(None, f"was lost: agent {agent} reconnected without it")
                elif running[client_uuid] and client.stop_requested:
                    to_stop.append(client_uuid)
        # Exits of clients the agent knows arrive as process_exited after their last reports.
        return to_stop

    def went_away(self, agent: str, since: float) -> None:
        """Agent `agent`'s session ended; `since` is when it was last heard from (monotonic)."""
        with self._lock:
            self._away_since[agent] = since
            for client in self._clients.values():
                if client.agent == agent and client.connection_lost:
                    client.connection_dropped = True

    def runs(self, agent: str, client_uuid: str) -> bool:
        with self._lock:
            client = self._clients.get(client_uuid)
            return client is not None and client.agent == agent

    def server_address_for(self, agent: str, client_uuid: str) -> str:
        """The FL server a tunnel of agent `agent` for this client joins; NOT_FOUND for a client no agent runs
        for us (or whose process has ended), PERMISSION_DENIED for another agent's."""
        named = {"agent": agent, "client_uuid": client_uuid}
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or not client.server_address:
                unknown = f"no client {quote(client_uuid)} was launched on an agent"
                raise NotFound(unknown, reason="TUNNEL_UNKNOWN_CLIENT", metadata=named)
            if client.agent != agent:
                other = f"client {client_uuid} was not launched on agent {agent}"
                raise PermissionDenied(other, reason="TUNNEL_OTHER_AGENT", metadata=named)
            if client.exit is not None:
                raise NotFound(f"client {client_uuid} has ended", reason="TUNNEL_CLIENT_ENDED", metadata=named)
            client.connection_lost = ""  # connected again
            return client.server_address

    def lose_connection(self, client_uuid: str, reason: str, only: str | None = None, dropped: bool = False) -> None:
        """Set why the client's FL connection was lost ('' = it was not); `only`: if that is the reason now;
        `dropped`: its agent's session is already known to have ended."""
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is not None and (only is None or client.connection_lost == only):
                client.connection_lost = reason
                client.connection_dropped = dropped

    def connection_lost(self, client_uuid: str) -> str:
        """Why the client's FL connection was lost with its agent's, or ''. Once the client has exited, only when
        that session did end: a client that crashed while its agent stayed connected broke its own tunnel (the
        agent's relay fails writing to its closed socket), and its own failure is why."""
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or (client.exit is not None and not client.connection_dropped):
                return ""
            return client.connection_lost

    def exited(self, agent: str, client_uuid: str, exit_code: int | None, log_tail: str) -> None:
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or client.agent != agent or client.exit is not None:
                return
            client.log_tail = log_tail
            client.exit = Exit(exit_code)

    def exit_of(self, client_uuid: str) -> Exit | None:
        """None while the client runs (or its agent is away for less than the grace)."""
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or client.exit is not None:
                return client.exit if client else Exit(None, "was never launched by an agent")
            away = self._away_since.get(client.agent)
            if away is None or time.monotonic() - away <= self._away_grace:
                return None
            grace = self._away_grace
            reason = f"was lost: agent {client.agent} stayed disconnected for more than {grace:g}s"
            client.exit = Exit(None, reason, lost=True)
            client.stop_requested = True  # should the agent come back with it still running
            return client.exit

    def log_tail(self, client_uuid: str) -> str:
        with self._lock:
            client = self._clients.get(client_uuid)
            return client.log_tail if client else ""

    def stop(self, client_uuid: str) -> str | None:
        """Mark the client's stop requested (sent again when its agent reconnects); the agent to tell now, or
        None when there is nothing to stop."""
        with self._lock:
            client = self._clients.get(client_uuid)
            if client is None or (client.exit is not None and not client.stop_requested):
                return None
            client.stop_requested = True
            return client.agent
