"""An agent session's messages as plain values: what the control plane asks of an agent and what the agent says.

Both ends (launch/agents.py on the control plane, agent/ at a site) speak these; launch/agent_codec.py is the one
place that converts them to and from AgentService's protobuf messages (protos/florist/v1/agent_service.proto),
whose names and fields they keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from florist_grpc.domain.errors import FloristError
from florist_grpc.domain.model import Job
from florist_grpc.fl.run_config import ClientRun

# --- the control plane asks (ConnectResponse) --------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome:
    """The session is accepted (the answer to hello)."""


@dataclass(frozen=True)
class ClientJob:
    """The job a launch or data check is for: what the site's policy checks and its audit log records."""

    id: str = ""
    project: str = ""
    owner: str = ""
    model: str = ""
    client_index: int = 0

    @classmethod
    def of(cls, job: Job, index: int) -> ClientJob:
        """What an agent is told of `job`, for its client `index`."""
        return cls(job.id, job.project, job.owner, job.model, index)


@dataclass(frozen=True)
class LaunchClient:
    """Start the FL client `run`. Its Redis address and user and the CA file that verifies a TLS FL server are the
    site's own: they do not travel (blank here; the agent fills them in). `tls`: the FL server speaks TLS."""

    request_id: str
    run: ClientRun
    tls: bool = False
    job: ClientJob = field(default_factory=ClientJob)


@dataclass(frozen=True)
class StopClient:
    client_uuid: str


@dataclass(frozen=True)
class ReadLog:
    request_id: str
    client_uuid: str
    offset: int = 0
    follow: bool = False


@dataclass(frozen=True)
class CheckData:
    """Can a client read `data_path`; with `probe`, the file's summary too."""

    request_id: str
    data_path: str
    probe: bool = False
    label_column: str = ""
    job: ClientJob = field(default_factory=ClientJob)


@dataclass(frozen=True)
class CancelRequest:
    """The control plane no longer waits for the answer to `request_id` (a log reader went away)."""

    request_id: str


Command = Welcome | LaunchClient | StopClient | ReadLog | CheckData | CancelRequest


@dataclass(frozen=True)
class Unreadable:
    """A request this agent could not read (what is wrong with it is `error`): answered with RequestFailed."""

    request_id: str
    error: FloristError


# --- the agent says (ConnectRequest) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownClient:
    """A client process the agent knows, as its hello lists it. `exit_code` None: running, or its code unknown."""

    client_uuid: str
    running: bool
    exit_code: int | None = None


@dataclass(frozen=True)
class AgentHello:
    """The first message of every session."""

    name: str
    version: str = ""
    devices: tuple[str, ...] = ()
    data_root: str = ""
    clients: tuple[KnownClient, ...] = ()
    problem: str = ""  # why the agent cannot run clients now ('' = healthy)
    max_clients: int = 0  # the most clients it runs at once (0 = no limit)
    # Its policy (--allow-project, --allow-model): empty = every project / the built-in models only.
    allowed_projects: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    fl_direct: bool = False  # its clients reach FL servers directly, not through AgentService.Tunnel


@dataclass(frozen=True)
class ProcessStarted:
    request_id: str
    client_uuid: str
    pid: int
    log_path: str


@dataclass(frozen=True)
class ProcessExited:
    """A client process ended; `exit_code` None: unknown (the process was adopted)."""

    client_uuid: str
    exit_code: int | None
    log_tail: str = ""


@dataclass(frozen=True)
class LogChunk:
    request_id: str
    text: str = ""
    next_offset: int = 0
    end: bool = False


@dataclass(frozen=True)
class ReportChange:
    """A client's whole current report, as the JSON it wrote."""

    client_uuid: str
    report_json: str


@dataclass(frozen=True)
class DataCheckResult:
    request_id: str
    ok: bool
    problem: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestFailed:
    """The agent could not carry out request `request_id`; `code` is the gRPC status code it maps to."""

    request_id: str
    code: int
    message: str


@dataclass(frozen=True)
class Heartbeat:
    problem: str = ""


AgentMessage = (
    AgentHello | ProcessStarted | ProcessExited | LogChunk | ReportChange | DataCheckResult | RequestFailed | Heartbeat
)
# The messages that answer a request, by its id.
Reply = ProcessStarted | DataCheckResult | RequestFailed
