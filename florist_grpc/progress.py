"""Turns a job's event stream into human progress lines (used by `train watch` and the demo).

It rebuilds each source's report by applying the merge patches in order -- exactly what any client of
StreamMetrics can do -- and prints a line when a round's aggregated evaluation arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from florist_grpc.domain import merge_patch
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb

# FL4Health's server layout: the aggregated loss sits in the round itself, the aggregated metrics under
# eval_round_metrics_aggregated with the names the clients report.
ROUND_LOSS = "val - loss - aggregated"
ROUND_ACCURACY = "val - prediction - accuracy"
TRAIN_ACCURACY = "train - prediction - accuracy"


def round_loss(data: dict[str, Any]) -> float:
    """A server round's aggregated validation loss (NaN until reported; non-finite values arrive as strings)."""
    return float(data.get(ROUND_LOSS, "nan"))


def round_accuracy(data: dict[str, Any]) -> float:
    """A server round's aggregated validation accuracy (NaN until reported)."""
    return float(data.get("eval_round_metrics_aggregated", {}).get(ROUND_ACCURACY, "nan"))


def as_float(value: Any) -> float:
    """A reported metric as a float: a diverging run's "NaN"/"Infinity"/"-Infinity" strings included."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class Progress:
    def __init__(self, emit: Callable[[str], None] = print) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.state = job_pb2.JOB_STATE_UNSPECIFIED
        self.error_message = ""
        self.last_sequence = 0
        self._printed_rounds: set[str] = set()
        self._emit = emit

    def key(self, event: pb.MetricsEvent) -> str:
        if event.source.kind == pb.SOURCE_KIND_CLIENT:
            return f"client{event.source.client_index}"
        return "server" if event.source.kind == pb.SOURCE_KIND_SERVER else "job"

    def apply(self, event: pb.MetricsEvent) -> None:
        patch = json_format.MessageToDict(event.patch)
        key = self.key(event)
        self.reports[key] = merge_patch.apply(self.reports.get(key, {}), patch)
        self.last_sequence = event.sequence
        self.state = event.job_state
        if event.source.kind == pb.SOURCE_KIND_JOB:
            self.error_message = str(patch.get("error_message", ""))
            self._emit(
                f"[{event.sequence}] job is {job_pb2.JobState.Name(event.job_state)}"
                + (f": {self.error_message}" if self.error_message else "")
            )
            return
        if key == "server":
            for number, data in sorted(self.rounds().items(), key=lambda kv: int(kv[0])):
                evaluated = ROUND_ACCURACY in data.get("eval_round_metrics_aggregated", {}) and ROUND_LOSS in data
                if number not in self._printed_rounds and evaluated:
                    self._printed_rounds.add(number)
                    self._emit(
                        f"[{event.sequence}] round {number}: val loss {round_loss(data):.4f}, "
                        f"val accuracy {round_accuracy(data):.4f}"
                    )

    def rounds(self) -> dict[str, dict[str, Any]]:
        rounds: dict[str, dict[str, Any]] = self.reports.get("server", {}).get("rounds", {})
        return rounds

    def summary(self) -> list[str]:
        lines = ["round  val loss  val accuracy  train accuracy"]
        for number, data in sorted(self.rounds().items(), key=lambda kv: int(kv[0])):
            train_accuracy = float(data.get("fit_round_metrics", {}).get(TRAIN_ACCURACY, "nan"))
            lines.append(f"{number:>5}  {round_loss(data):8.4f}  {round_accuracy(data):12.4f}  {train_accuracy:14.4f}")
        return lines
