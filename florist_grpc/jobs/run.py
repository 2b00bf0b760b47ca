"""The runtime state of a followed job: its processes and its ending in progress.

Owned by the follower thread (florist_grpc/jobs/follower.py); nothing else reads or writes it. What each process
last reported and had persisted is the report reader's (florist_grpc/metrics/report_reader.py).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from florist_grpc.domain.model import SERVER_SOURCE, Exit, JobState, MetricsEvent, Source
from florist_grpc.launch.handles import ProcessHandle


@dataclass
class RunningProcess:
    source: Source
    uuid: str
    handle: ProcessHandle | None = None
    exit: Exit | None = None
    stopped_by_us: bool = False
    failure: str = ""  # how it failed, with its log tail, once it exited uncleanly

    @property
    def name(self) -> str:
        if self.source.key == SERVER_SOURCE.key:
            return "FL server"
        return f"FL client {self.source.client_index} ({self.uuid})"


@dataclass
class Ending:
    state: JobState
    message: str
    kill_at: float
    past_grace: bool = False  # the stop grace is over: sites' unconfirmed stops no longer hold the end
    done: list[concurrent.futures.Future[MetricsEvent | None]] = field(default_factory=list)


@dataclass
class JobRun:
    job_id: str
    processes: dict[str, RunningProcess]  # by source key
    ending: Ending | None = None
    server_done_at: float | None = None

    @property
    def server(self) -> RunningProcess:
        return self.processes[SERVER_SOURCE.key]

    @property
    def clients(self) -> list[RunningProcess]:
        return [p for key, p in self.processes.items() if key != SERVER_SOURCE.key]
