"""What a job's reports say per round, as the points an experiment tracker logs: (metric name, round, value).

Read the way the CLI reads a round (florist_grpc/domain/report_layout.py), FL4Health's layout included, plus every
other number of the round's metrics. Aggregated metrics keep their report names (`val - loss - aggregated`,
`val - prediction - accuracy`, `train - loss`, ...); a client's carry its index: `client0/val - loss`. A name
appears once per round: the first reading in the order below wins.

Pure: no I/O. `JobReports` rebuilds each source's report from the job's events (merge patches applied in order)
and says which rounds an event touched, so only those rounds are read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from florist_grpc.domain import merge_patch
from florist_grpc.domain.model import JsonObject, MetricsEvent, SourceKind
from florist_grpc.domain.report_layout import (
    BACKWARD,
    EVAL_METRICS_AGGREGATED,
    EVAL_ROUND_METRICS,
    FIT_ROUND_LOSSES,
    FIT_ROUND_METRICS,
    ROUND_LOSS,
    ROUNDS,
    TRAIN_LOSS,
    VAL_LOSS,
    client_round_loss,
    client_round_train_loss,
    number,
    round_train_loss,
    server_round_loss,
)

SERVER = "server"


@dataclass(frozen=True)
class Point:
    """One metric of one round: `name` as the reports name it (a client's prefixed `client<i>/`)."""

    name: str
    step: int
    value: float
    time: datetime


def _round(report: JsonObject, n: int) -> dict[str, Any]:
    rounds = report.get(ROUNDS)
    data = rounds.get(str(n)) if isinstance(rounds, dict) else None
    return data if isinstance(data, dict) else {}


def _numbers(section: Any) -> Iterable[tuple[str, float]]:
    """The numeric entries of a report section (a dict of metric name -> value), in its order."""
    if isinstance(section, dict):
        for name, value in section.items():
            if (n := number(value)) is not None:
                yield str(name), n


def _put(values: dict[str, float], name: str, value: float | None) -> None:
    if value is not None and name not in values:
        values[name] = value


def server_values(server: dict[str, Any], clients: list[dict[str, Any]]) -> dict[str, float]:
    """A round's aggregated metrics: the loss, the training loss (the server's, else the clients' mean once the
    fit is over: FL4Health's layout), then every number of the aggregated evaluation and fit metrics."""
    values: dict[str, float] = {}
    _put(values, ROUND_LOSS, server_round_loss(server))
    _put(values, TRAIN_LOSS, round_train_loss(server, clients).value)
    for section in (EVAL_METRICS_AGGREGATED, FIT_ROUND_METRICS):
        for name, value in _numbers(server.get(section)):
            _put(values, name, value)
    return values


def client_values(data: dict[str, Any]) -> dict[str, float]:
    """A client's round: its validation and training loss, then every number of its evaluation metrics, fit
    metrics and other training losses (FL4Health's additional losses, by their names)."""
    values: dict[str, float] = {}
    _put(values, VAL_LOSS, client_round_loss(data))
    _put(values, TRAIN_LOSS, client_round_train_loss(data))
    for section in (EVAL_ROUND_METRICS, FIT_ROUND_METRICS):
        for name, value in _numbers(data.get(section)):
            _put(values, name, value)
    for name, value in _numbers(data.get(FIT_ROUND_LOSSES)):
        if name != BACKWARD:  # already the client's `train - loss`
            _put(values, name, value)
    return values


def round_values(reports: Mapping[str, JsonObject], n_clients: int, n: int) -> dict[str, float]:
    """Every metric of round `n`: aggregated ones by name, each client's as `client<i>/<name>`."""
    clients = [_round(reports.get(f"client{i}", {}), n) for i in range(n_clients)]
    values = server_values(_round(reports.get(SERVER, {}), n), clients)
    for i, data in enumerate(clients):
        for name, value in client_values(data).items():
            values[f"client{i}/{name}"] = value
    return values


def touched_rounds(patch: JsonObject) -> set[int]:
    """The rounds a report patch changes (`rounds."<n>"`)."""
    rounds = patch.get(ROUNDS)
    if not isinstance(rounds, dict):
        return set()
    return {int(key) for key in rounds if str(key).isdigit()}


class JobReports:
    """A job's reports rebuilt from its events, and the points of the rounds each event touches."""

    def __init__(self, n_clients: int) -> None:
        self.n_clients = n_clients
        self.reports: dict[str, JsonObject] = {}
        self.sequence = 0

    def apply(self, event: MetricsEvent) -> set[int]:
        """Apply the event's patch to its source's report; the rounds it touched."""
        self.sequence = event.sequence
        if event.source.kind is SourceKind.JOB:
            return set()
        key = event.source.key
        self.reports[key] = merge_patch.apply(self.reports.get(key, {}), event.patch)
        if event.source.kind is SourceKind.CLIENT:
            self.n_clients = max(self.n_clients, event.source.client_index + 1)
        return touched_rounds(event.patch)

    def points(self, rounds: Iterable[int], time: datetime) -> list[Point]:
        """The points of `rounds` as the reports now say them, stamped `time`."""
        return [
            Point(name, n, value, time)
            for n in sorted(rounds)
            for name, value in round_values(self.reports, self.n_clients, n).items()
        ]

    def all_rounds(self) -> set[int]:
        """Every round any source has reported."""
        return set().union(*(touched_rounds(report) for report in self.reports.values()))
