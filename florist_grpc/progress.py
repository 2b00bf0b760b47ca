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

ROUND_LOSS = "val - loss - aggregated"
ROUND_ACCURACY = "val - prediction - accuracy - aggregated"


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
                if number not in self._printed_rounds and ROUND_ACCURACY in data.get(
                    "eval_round_metrics_aggregated", {}
                ):
                    self._printed_rounds.add(number)
                    metrics = data["eval_round_metrics_aggregated"]
                    self._emit(
                        f"[{event.sequence}] round {number}: val loss {as_float(metrics.get(ROUND_LOSS)):.4f}, "
                        f"val accuracy {as_float(metrics[ROUND_ACCURACY]):.4f}"
                    )

    def rounds(self) -> dict[str, dict[str, Any]]:
        rounds: dict[str, dict[str, Any]] = self.reports.get("server", {}).get("rounds", {})
        return rounds

    def summary(self) -> list[str]:
        lines = ["round  val loss  val accuracy  train loss"]
        for number, data in sorted(self.rounds().items(), key=lambda kv: int(kv[0])):
            ev = data.get("eval_round_metrics_aggregated", {})
            fit = data.get("fit_round_metrics", {})
            lines.append(
                f"{number:>5}  {as_float(ev.get(ROUND_LOSS)):8.4f}  {as_float(ev.get(ROUND_ACCURACY)):12.4f}"
                f"  {as_float(fit.get('train - loss')):10.4f}"
            )
        return lines
