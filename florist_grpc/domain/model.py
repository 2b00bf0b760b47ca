"""The job as the control plane sees it, independent of protobuf and of any store."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from florist_grpc.domain.resources import Resources
from florist_grpc.domain.tracking import TrackingConfig

JsonObject = dict[str, Any]


class JobState(enum.IntEnum):
    """Mirrors florist.v1.JobState (same numbers, so conversion is a cast)."""

    UNSPECIFIED = 0
    NOT_STARTED = 1
    IN_PROGRESS = 2
    FINISHED_SUCCESSFULLY = 3
    FINISHED_WITH_ERROR = 4
    CANCELLED = 5
    # Waits in the queue for capacity (serve's --max-running-jobs and friends, agents' --max-clients).
    QUEUED = 6

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.FINISHED_SUCCESSFULLY, JobState.FINISHED_WITH_ERROR, JobState.CANCELLED})


class ClientState(enum.IntEnum):
    """Mirrors florist.v1.ClientState."""

    UNSPECIFIED = 0
    RUNNING = 1
    FINISHED = 2
    FAILED = 3
    STOPPED = 4


class SourceKind(enum.IntEnum):
    """Mirrors florist.v1.SourceKind."""

    UNSPECIFIED = 0
    SERVER = 1
    CLIENT = 2
    JOB = 3


@dataclass(frozen=True)
class Source:
    """Who produced an event. `key` names the source's report inside a job ("server", "client3", "job")."""

    kind: SourceKind
    client_index: int = -1
    client_uuid: str = ""

    @property
    def key(self) -> str:
        if self.kind is SourceKind.CLIENT:
            return f"client{self.client_index}"
        return "server" if self.kind is SourceKind.SERVER else "job"


SERVER_SOURCE = Source(SourceKind.SERVER)
JOB_SOURCE = Source(SourceKind.JOB)


@dataclass(frozen=True)
class ServerLog:
    """The FL server's log."""


@dataclass(frozen=True)
class ClientLogByIndex:
    """A client's log, by its index in the job's clients."""

    index: int


@dataclass(frozen=True)
class ClientLogByUuid:
    """A client's log, by its run uuid."""

    uuid: str


# Whose log StreamLogs reads (jobs/logs.py finds it).
LogSource = ServerLog | ClientLogByIndex | ClientLogByUuid


@dataclass(frozen=True)
class ProcessRef:
    """A launched FL process. `create_time` (from the OS) guards against signalling a recycled pid."""

    pid: int = 0
    create_time: float = 0.0
    log_path: str = ""
    agent_address: str = ""
    # Under `serve --launcher slurm`: the Slurm job that runs it (recovery re-attaches by it).
    slurm_job_id: str = ""


@dataclass
class Client:
    data_path: str
    # Name of the agent that runs this client; empty = launched locally by the control plane.
    agent: str = ""
    redis_address: str = ""
    uuid: str = ""
    state: ClientState = ClientState.UNSPECIFIED
    metrics: JsonObject = field(default_factory=dict)
    error_message: str = ""
    process: ProcessRef = field(default_factory=ProcessRef)
    # "auto" (first CUDA device if any, else cpu), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # The label column of a CSV data file ("" = "label").
    label_column: str = ""
    # A STOPPED client whose site has not confirmed the stop yet (it is retried in the background).
    stop_unconfirmed: bool = False


@dataclass
class Job:
    id: str
    model: str
    strategy: str
    optimizer: str
    client_type: str
    server_config: JsonObject
    clients: list[Client]
    create_time: datetime
    state: JobState = JobState.NOT_STARTED
    server_address: str = ""
    redis_address: str = ""
    server_uuid: str = ""
    server_metrics: JsonObject = field(default_factory=dict)
    error_message: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    server_process: ProcessRef = field(default_factory=ProcessRef)
    # True when the control plane picked server_address itself, so it may pick another if the port got taken.
    server_address_auto: bool = False
    last_sequence: int = 0
    # The model's own settings, validated against its catalog schema.
    model_config: JsonObject = field(default_factory=dict)
    # The project the job belongs to (callers see the jobs of their projects only) and who created it.
    project: str = "default"
    owner: str = ""
    # Higher starts first in the queue (only an admin sets it); when it entered the queue.
    priority: int = 0
    queue_time: datetime | None = None
    # The store-wide revision of the job's last change (state, metadata, client states, current round).
    revision: int = 0
    # The last round the FL server finished (eval_round_end in its report).
    current_round: int = 0
    # The MLflow experiment of the job's run and its extra tags (empty = the control plane's defaults).
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # What each FL process may use (domain/resources.py).
    resources: Resources = field(default_factory=Resources)

    def client_source(self, index: int) -> Source:
        return Source(SourceKind.CLIENT, index, self.clients[index].uuid)


@dataclass(frozen=True)
class MetricsEvent:
    """One entry of a job's event log. `patch` is an RFC 7386 merge patch against the source's previous report."""

    job_id: str
    sequence: int
    time: datetime
    source: Source
    patch: JsonObject
    job_state: JobState


class ChangeType(enum.IntEnum):
    """Mirrors florist.v1.JobChangeType."""

    UNSPECIFIED = 0
    ADDED = 1
    MODIFIED = 2
    DELETED = 3
    BOOKMARK = 4


@dataclass(frozen=True)
class JobChange:
    """One entry of the store-wide log of job changes (WatchJobs). `job` is the job right after the change, without
    its accumulated reports (the last job a DELETED change removed); `previous_state` its state before (for
    watches filtered by state: a job may enter or leave what they watch). A BOOKMARK has no job."""

    revision: int
    type: ChangeType
    job: Job | None = None
    previous_state: JobState = JobState.UNSPECIFIED


@dataclass(frozen=True)
class Launch:
    """What StartTraining records once the FL processes run."""

    server_address: str
    server_uuid: str
    server_process: ProcessRef
    client_uuids: list[str]
    client_processes: list[ProcessRef]
    start_time: datetime


@dataclass(frozen=True)
class Exit:
    """How a process ended. `code` is None when it is unknown (the process was not our child: we restarted)."""

    code: int | None
    # Why the process counts as ended when its exit was not observed (e.g. its agent stayed away too long).
    reason: str = ""
    # Nobody saw it end, nor that it is gone: it counts as ended because its agent stayed away past the grace.
    lost: bool = False

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.reason:
            return self.reason
        if self.code is None:
            return "ended (exit code unknown: it ran while the control plane was restarting)"
        if self.code < 0:
            try:
                return f"was killed by {signal.Signals(-self.code).name}"
            except ValueError:
                return f"was killed by signal {-self.code}"
        return f"exited with code {self.code}"
