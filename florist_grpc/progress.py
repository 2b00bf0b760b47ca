"""What a job's event stream says about it, as plain data: no I/O, no clock, no terminal.

Any StreamMetrics client can do the same: apply each source's merge patches in order to rebuild its report, then
read FLorist's document layout (`rounds."<n>"`...). `train watch`, `run`, `plot` and the demo draw from this.
Event times (set by the control plane) drive elapsed time and the ETA, so replaying a finished job gives the same
numbers as watching it live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from florist_grpc.domain import merge_patch
from florist_grpc.domain.report_layout import (
    EVAL_ROUND_END,
    EVAL_ROUND_LOSS,
    EVAL_ROUND_METRICS,
    INITIALIZED,
    NUM_ROUNDS,
    ROUND_END,
    ROUNDS,
    SHUTDOWN,
    TrainLossSource,
    client_round_accuracy,
    client_round_loss,
    client_round_train_loss,
    number,
    round_train_loss,
    server_round_accuracy,
    server_round_finished,
    server_round_loss,
)
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb

TERMINAL = frozenset(
    {
        job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,
        job_pb2.JOB_STATE_FINISHED_WITH_ERROR,
        job_pb2.JOB_STATE_CANCELLED,
    }
)


def state_name(state: int) -> str:
    """`IN_PROGRESS` for JOB_STATE_IN_PROGRESS: the short name people type."""
    return job_pb2.JobState.Name(job_pb2.JobState.ValueType(state)).removeprefix("JOB_STATE_")


def _rounds(report: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    rounds = report.get(ROUNDS, {})
    out = [(int(k), v) for k, v in rounds.items() if str(k).isdigit() and isinstance(v, dict)]
    return sorted(out, key=lambda kv: kv[0])


@dataclass(frozen=True)
class ClientView:
    """One client as the live view shows it."""

    index: int
    uuid: str
    state: str
    round: int
    loss: float | None
    accuracy: float | None


@dataclass(frozen=True)
class RoundRow:
    """One round's numbers: aggregated by the server, and each client's own (index -> value)."""

    number: int
    loss: float | None
    accuracy: float | None
    train_loss: float | None
    client_loss: dict[int, float | None] = field(default_factory=dict)
    client_accuracy: dict[int, float | None] = field(default_factory=dict)
    client_train_loss: dict[int, float | None] = field(default_factory=dict)
    train_loss_source: TrainLossSource | None = None  # where `train_loss` was read (None: not reported)


class JobProgress:
    """A job rebuilt from its events. `apply` returns what is worth telling a person about that event."""

    def __init__(self, total_rounds: int = 0, n_clients: int = 0) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.state: int = job_pb2.JOB_STATE_UNSPECIFIED
        self.error_message = ""
        self.last_sequence = 0
        self.start_time: float | None = None  # seconds since the epoch, from the event that entered IN_PROGRESS
        self.last_time: float | None = None
        self.n_clients = n_clients
        self.client_uuids: dict[int, str] = {}
        self._total_rounds = total_rounds
        self._round_done_at: dict[int, float] = {}
        self._told_rounds: set[int] = set()
        self._told_accuracy: set[int] = set()

    @classmethod
    def for_job(cls, job: job_pb2.Job) -> JobProgress:
        """Seeded from GetJob: the number of rounds asked for and the clients, before any event arrives."""
        rounds = number(json_format.MessageToDict(job.server_config).get("n_server_rounds"))
        progress = cls(int(rounds or 0), len(job.clients))
        # Anything past NOT_STARTED is replayed from the events, which start at the job's beginning.
        progress.state = job.state if job.state == job_pb2.JOB_STATE_NOT_STARTED else job_pb2.JOB_STATE_UNSPECIFIED
        progress.client_uuids = {i: c.uuid for i, c in enumerate(job.clients) if c.uuid}
        return progress

    @classmethod
    def from_reports(cls, job: job_pb2.Job) -> JobProgress:
        """From a job's accumulated reports (GetJob, full view) instead of its events."""
        progress = cls.for_job(job)
        progress.reports["server"] = json_format.MessageToDict(job.server_metrics)
        for i, client in enumerate(job.clients):
            progress.reports[f"client{i}"] = json_format.MessageToDict(client.metrics)
        return progress

    # --- events -------------------------------------------------------------------------------------------------

    def apply(self, event: pb.MetricsEvent) -> list[str]:
        patch = json_format.MessageToDict(event.patch)
        key = self.source_key(event)
        self.reports[key] = merge_patch.apply(self.reports.get(key, {}), patch)
        self.last_sequence = event.sequence
        self.state = event.job_state
        at = event.time.ToNanoseconds() / 1e9 if event.HasField("time") else None
        self.last_time = at if at is not None else self.last_time
        if event.source.kind == pb.SOURCE_KIND_CLIENT:
            self.client_uuids[event.source.client_index] = event.source.client_uuid
            self.n_clients = max(self.n_clients, event.source.client_index + 1)
        if event.source.kind != pb.SOURCE_KIND_JOB:
            return self._finished_rounds(at) if key == "server" else []
        if event.job_state == job_pb2.JOB_STATE_IN_PROGRESS and self.start_time is None:
            self.start_time = at
        if "notice" in patch:  # the control plane tells the job something (a report set aside): not a state change
            return [f"notice: {patch['notice']}"]
        message = str(patch.get("error_message", ""))
        self.error_message = message or self.error_message
        return [f"job is {state_name(event.job_state)}" + (f": {message}" if message else "")]

    @staticmethod
    def source_key(event: pb.MetricsEvent) -> str:
        if event.source.kind == pb.SOURCE_KIND_CLIENT:
            return f"client{event.source.client_index}"
        return "server" if event.source.kind == pb.SOURCE_KIND_SERVER else "job"

    def _finished_rounds(self, at: float | None) -> list[str]:
        """A line for each round the server has newly finished (FLorist's `eval_round_end`), with what it has.
        FL4Health writes a round's aggregated metrics in a report of their own after its loss: when they come in a
        later event, the accuracy gets a line of its own then, rather than being shown as missing."""
        lines = []
        for n, data in _rounds(self.reports.get("server", {})):
            accuracy = server_round_accuracy(data)
            if n not in self._told_rounds and server_round_finished(data):
                self._told_rounds.add(n)
                if at is not None:
                    self._round_done_at[n] = at
                loss = server_round_loss(data)
                parts = [] if loss is None else [f"val loss {fmt(loss)}"]
                if accuracy is not None:
                    self._told_accuracy.add(n)
                    parts.append(f"val accuracy {fmt(accuracy)}")
                lines.append(f"round {n}{self._of_total()}: " + (", ".join(parts) or "evaluated, nothing aggregated"))
            elif n in self._told_rounds and n not in self._told_accuracy and accuracy is not None:
                self._told_accuracy.add(n)
                lines.append(f"round {n}{self._of_total()}: val accuracy {fmt(accuracy)}")
        return lines

    def _of_total(self) -> str:
        return f"/{self.total_rounds}" if self.total_rounds else ""

    # --- what the view shows ------------------------------------------------------------------------------------

    @property
    def total_rounds(self) -> int:
        reported = number(self.reports.get("server", {}).get(NUM_ROUNDS))
        return int(reported) if reported else self._total_rounds

    @property
    def completed_rounds(self) -> int:
        return len(self._told_rounds)

    @property
    def current_round(self) -> int:
        """The highest round the server has started (0 before round 1)."""
        rounds = _rounds(self.reports.get("server", {}))
        return rounds[-1][0] if rounds else 0

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY

    def elapsed(self, now: float) -> float:
        """Seconds since the job entered IN_PROGRESS (up to its last event once it has ended)."""
        if self.start_time is None:
            return 0.0
        end = self.last_time if self.finished and self.last_time is not None else now
        return max(0.0, end - self.start_time)

    def eta(self, now: float) -> float | None:
        """Seconds left, at the mean pace of the rounds done so far; None until one round is done."""
        done, total = self.completed_rounds, self.total_rounds
        if self.finished or not done or not total or self.start_time is None:
            return None
        last_done = max(self._round_done_at.values(), default=self.start_time)
        per_round = (last_done - self.start_time) / done
        return max(0.0, per_round * (total - done) - (now - last_done))

    def waiting_for(self) -> str:
        """Before round 1, what the job is waiting for (empty once rounds run or the job has ended)."""
        if self.finished or self.current_round or self.state == job_pb2.JOB_STATE_UNSPECIFIED:
            return ""  # UNSPECIFIED: the replay of its events has not reached its start yet
        if self.state == job_pb2.JOB_STATE_NOT_STARTED:
            return "the job has not been started (florist-grpc train start ID)"
        if self.state == job_pb2.JOB_STATE_QUEUED:
            return "its turn in the queue (the control plane's limits are reached)"
        if "server" not in self.reports:
            return "the FL server to report"
        return f"{self.n_clients} FL client(s) to connect" if self.n_clients else "FL clients to connect"

    def clients(self) -> list[ClientView]:
        return [self._client(i) for i in range(self.n_clients)]

    def _client(self, index: int) -> ClientView:
        report = self.reports.get(f"client{index}", {})
        rounds = _rounds(report)
        n, data = rounds[-1] if rounds else (0, {})
        evaluated = [(m, d) for m, d in rounds if client_round_loss(d) is not None]
        loss = client_round_loss(evaluated[-1][1]) if evaluated else None
        accuracy = client_round_accuracy(evaluated[-1][1]) if evaluated else None
        if SHUTDOWN in report:
            state = "done"
        elif self.finished:
            state = state_name(self.state).lower()
        elif EVAL_ROUND_END in data or EVAL_ROUND_LOSS in data or EVAL_ROUND_METRICS in data:
            state = f"evaluated round {n}"
        elif ROUND_END in data:  # the end of the client's fit: FLorist's UI counts its round as done from here
            state = f"trained round {n}"
        elif n:
            state = f"training round {n}"
        elif INITIALIZED in report:
            state = "connected"
        else:
            state = "waiting"
        return ClientView(index, self.client_uuids.get(index, ""), state, n, loss, accuracy)

    def rounds_table(self) -> list[RoundRow]:
        """Every round the server reported, with each client's evaluation of it."""
        clients = {i: dict(_rounds(self.reports.get(f"client{i}", {}))) for i in range(self.n_clients)}
        rows = []
        for n, data in _rounds(self.reports.get("server", {})):
            train = round_train_loss(data, [r.get(n, {}) for r in clients.values()])
            rows.append(
                RoundRow(
                    n,
                    server_round_loss(data),
                    server_round_accuracy(data),
                    train.value,
                    {i: client_round_loss(r.get(n, {})) for i, r in clients.items()},
                    {i: client_round_accuracy(r.get(n, {})) for i, r in clients.items()},
                    {i: client_round_train_loss(r.get(n, {})) for i, r in clients.items()},
                    train.source,
                )
            )
        return rows


def train_loss_note(rows: list[RoundRow]) -> str:
    """Which training loss the rounds show, for a note under a table: `train loss: the FL server's aggregate`;
    the rounds of each source when they differ. Empty when no round has one."""
    sources: dict[TrainLossSource, list[int]] = {}
    for row in rows:
        if row.train_loss_source is not None:
            sources.setdefault(row.train_loss_source, []).append(row.number)
    if len(sources) <= 1:
        return "".join(f"train loss: {source.value}" for source in sources)
    parts = [f"{s.value} (round{'s' * (len(ns) > 1)} {', '.join(map(str, ns))})" for s, ns in sources.items()]
    return "train loss: " + "; ".join(parts)


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a table cell: `-` when missing; a non-finite one (a diverged run) as `NaN`, `inf`, `-inf`."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"
