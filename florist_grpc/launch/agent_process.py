"""An FL client process that an agent runs for us: a ProcessHandle over the agent's session.

The follower's threads call it; it never blocks on the network. What it reports comes from the state the
control plane keeps from the agent's messages (launch/agents.py); a stop is posted to the event loop and sent to
the agent (again after a reconnect, should the agent be away).
"""

from __future__ import annotations

from typing import Protocol

from florist_grpc.domain.model import Exit, ProcessRef


class SiteClientStates(Protocol):
    """What the control plane knows of the client processes agents run, as the follower's threads may ask it
    (thread-safe, never blocking on the network)."""

    def exit_of(self, client_uuid: str) -> Exit | None:
        """None while the client runs (or its agent is away for less than the grace)."""

    def request_stop(self, client_uuid: str) -> None:
        """Have the client's agent stop it; returns at once."""

    def log_tail(self, client_uuid: str) -> str:
        """The last lines of its log, as its agent sent them when it exited."""

    def connection_lost(self, client_uuid: str) -> str:
        """Why its FL connection, carried over its agent's connection, broke with it ('' if it did not)."""


class AgentProcess:
    def __init__(self, states: SiteClientStates, client_uuid: str, ref: ProcessRef) -> None:
        self.ref = ref
        self._states = states
        self._uuid = client_uuid

    def poll(self) -> Exit | None:
        return self._states.exit_of(self._uuid)

    def terminate(self) -> None:
        self._states.request_stop(self._uuid)

    def kill(self) -> None:
        self.terminate()  # the agent escalates to SIGKILL itself after its grace period

    def log_tail(self) -> str:
        return self._states.log_tail(self._uuid)

    def connection_lost(self) -> str:
        return self._states.connection_lost(self._uuid)
