"""An FL client process that an agent runs for us: a ProcessHandle over the agent's session.

The follower's threads call it; it never blocks on the network. What it reports comes from the state
florist_grpc/launch/agents.py keeps from the agent's messages; a stop is posted to the event loop and sent to the
agent (again after a reconnect, should the agent be away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from florist_grpc.domain.model import Exit, ProcessRef

if TYPE_CHECKING:
    from florist_grpc.launch.agents import Agents


@dataclass
class RemoteClient:
    """What the control plane knows of one client process an agent runs."""

    agent: str
    exit: Exit | None = None
    log_tail: str = ""
    stop_requested: bool = False


class AgentProcess:
    def __init__(self, agents: Agents, client_uuid: str, ref: ProcessRef) -> None:
        self.ref = ref
        self._agents = agents
        self._uuid = client_uuid

    def poll(self) -> Exit | None:
        return self._agents.exit_of(self._uuid)

    def terminate(self) -> None:
        self._agents.request_stop(self._uuid)

    def kill(self) -> None:
        self.terminate()  # the agent escalates to SIGKILL itself after its grace period

    def log_tail(self) -> str:
        return self._agents.log_tail(self._uuid)
