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
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb

# --- FLorist's report layout: the key names read here, all in one place ----------------------------------------
ROUNDS = "rounds"
NUM_ROUNDS = "num_rounds"  # server, top level
FIT_END = "fit_end"  # server, top level: every round ran
SHUTDOWN = "shutdown"  # both, top level
INITIALIZED = "initialized"  # client, top level
# Server, per round.
ROUND_LOSS = "val - loss - aggregated"  # at round level (FLorist) or inside the aggregated evaluation metrics
EVAL_METRICS_AGGREGATED = "eval_round_metrics_aggregated"
FIT_ROUND_METRICS = "fit_round_metrics"
FIT_ROUND_START = "fit_round_start"
# Metric names as clients report them; the server's aggregate carries the same name (older layout: + suffix).
ACCURACY = "val - prediction - accuracy"
VAL_LOSS = "val - loss"
TRAIN_LOSS = "train - loss"
AGGREGATED_SUFFIX = " - aggregated"
# Client, per round.
ROUND_START = "round_start"
ROUND_END = "round_end"
EVAL_ROUND_LOSS = "eval_round_loss"  # a number (FLorist) or {"checkpoint": number}
EVAL_ROUND_METRICS = "eval_round_metrics"
FIT_ROUND_LOSSES = "fit_round_losses"
BACKWARD = "backward"

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


def number(value: Any) -> float | None:
    """A reported metric as a float: numbers, and the strings "NaN"/"Infinity" that stand for non-finite ones."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return None


def _first(*values: Any) -> float | None:
    return next((n for v in values if (n := number(v)) is not None), None)


def server_round_loss(data: dict[str, Any]) -> float | None:
    return _first(data.get(ROUND_LOSS), data.get(EVAL_METRICS_AGGREGATED, {}).get(ROUND_LOSS))


def server_round_accuracy(data: dict[str, Any]) -> float | None:
    aggregated = data.get(EVAL_METRICS_AGGREGATED, {})
    return _first(aggregated.get(ACCURACY), aggregated.get(ACCURACY + AGGREGATED_SUFFIX))


def server_round_train_loss(data: dict[str, Any]) -> float | None:
    return number(data.get(FIT_ROUND_METRICS, {}).get(TRAIN_LOSS))


def client_round_loss(data: dict[str, Any]) -> float | None:
    loss = data.get(EVAL_ROUND_LOSS)
    nested = loss.get("checkpoint") if isinstance(loss, dict) else None
    return _first(loss, nested, data.get(EVAL_ROUND_METRICS, {}).get(VAL_LOSS))


def client_round_accuracy(data: dict[str, Any]) -> float | None:
    return number(data.get(EVAL_ROUND_METRICS, {}).get(ACCURACY))


def client_round_train_loss(data: dict[str, Any]) -> float | None:
    return number(data.get(FIT_ROUND_LOSSES, {}).get(BACKWARD))


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
        message = str(patch.get("error_message", ""))
        self.error_message = message or self.error_message
        return [f"job is {state_name(event.job_state)}" + (f": {message}" if message else "")]

    @staticmethod
    def source_key(event: pb.MetricsEvent) -> str:
        if event.source.kind == pb.SOURCE_KIND_CLIENT:
            return f"client{event.source.client_index}"
        return "server" if event.source.kind == pb.SOURCE_KIND_SERVER else "job"

    def _finished_rounds(self, at: float | None) -> list[str]:
        lines = []
        for n, data in _rounds(self.reports.get("server", {})):
            if n in self._told_rounds or not self._round_finished(data):
                continue
            self._told_rounds.add(n)
            if at is not None:
                self._round_done_at[n] = at
            loss, accuracy = fmt(server_round_loss(data)), fmt(server_round_accuracy(data))
            lines.append(f"round {n}{self._of_total()}: val loss {loss}, val accuracy {accuracy}")
        return lines

    @staticmethod
    def _round_finished(data: dict[str, Any]) -> bool:
        # The aggregated evaluation closes a round (FL4Health writes it after the round-level loss, possibly in a
        # later report): announcing the round on the loss alone would show its accuracy as missing.
        return EVAL_METRICS_AGGREGATED in data

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
        elif ROUND_END in data or EVAL_ROUND_METRICS in data:
            state = f"evaluated round {n}"
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
            rows.append(
                RoundRow(
                    n,
                    server_round_loss(data),
                    server_round_accuracy(data),
                    server_round_train_loss(data),
                    {i: client_round_loss(r.get(n, {})) for i, r in clients.items()},
                    {i: client_round_accuracy(r.get(n, {})) for i, r in clients.items()},
                    {i: client_round_train_loss(r.get(n, {})) for i, r in clients.items()},
                )
            )
        return rows


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a table cell: `-` when missing; a non-finite one (a diverged run) as `NaN`, `inf`, `-inf`."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"
