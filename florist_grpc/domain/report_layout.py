"""FLorist's report layout, read: the key names, and what one round of a server's or a client's report says.

Reports come from our own reporter or from FL4Health's (FLorist's `RedisMetricsReporter`), and the two do not hold
the same keys: FL4Health's server has no training loss (its clients report theirs in `fit_round_losses`) and omits
the aggregated evaluation of a round that has none. Everything that reads a round (`train watch`, `run`, `plot`,
the demo) reads it here, so every view agrees on which number is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

ROUNDS = "rounds"
NUM_ROUNDS = "num_rounds"  # server, top level
FIT_END = "fit_end"  # server, top level: every round ran
SHUTDOWN = "shutdown"  # both, top level
INITIALIZED = "initialized"  # client, top level
# Server, per round.
ROUND_LOSS = "val - loss - aggregated"  # at round level (FLorist) or inside the aggregated evaluation metrics
EVAL_METRICS_AGGREGATED = "eval_round_metrics_aggregated"
FIT_ROUND_METRICS = "fit_round_metrics"
FIT_ROUND_END = "fit_round_end"
EVAL_ROUND_END = "eval_round_end"  # both; on the server, FLorist's UI counts the round as done from it
# Metric names as clients report them; the server's aggregate carries the same name (older layout: + suffix).
ACCURACY = "val - prediction - accuracy"
VAL_LOSS = "val - loss"
TRAIN_LOSS = "train - loss"
AGGREGATED_SUFFIX = " - aggregated"
# Client, per round.
ROUND_START = "round_start"
ROUND_END = "round_end"  # end of the client's fit: FLorist's UI counts the client's round as done from it
EVAL_ROUND_LOSS = "eval_round_loss"  # a number (FLorist) or {"checkpoint": number}
EVAL_ROUND_METRICS = "eval_round_metrics"
FIT_ROUND_LOSSES = "fit_round_losses"
BACKWARD = "backward"  # FL4Health's name for the loss a client trains on


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


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def server_round_loss(data: dict[str, Any]) -> float | None:
    return _first(data.get(ROUND_LOSS), _section(data, EVAL_METRICS_AGGREGATED).get(ROUND_LOSS))


def server_round_accuracy(data: dict[str, Any]) -> float | None:
    aggregated = _section(data, EVAL_METRICS_AGGREGATED)
    return _first(aggregated.get(ACCURACY), aggregated.get(ACCURACY + AGGREGATED_SUFFIX))


def server_round_finished(data: dict[str, Any]) -> bool:
    """The server evaluated the round: `eval_round_end`, the key FLorist's UI counts rounds by. FL4Health omits
    `eval_round_metrics_aggregated` when the clients report no metrics, so that key alone would never close such a
    round; it still closes one in layouts without `eval_round_end`."""
    return EVAL_ROUND_END in data or EVAL_METRICS_AGGREGATED in data


def client_round_loss(data: dict[str, Any]) -> float | None:
    loss = data.get(EVAL_ROUND_LOSS)
    nested = loss.get("checkpoint") if isinstance(loss, dict) else None
    return _first(loss, nested, _section(data, EVAL_ROUND_METRICS).get(VAL_LOSS))


def client_round_accuracy(data: dict[str, Any]) -> float | None:
    return number(_section(data, EVAL_ROUND_METRICS).get(ACCURACY))


def client_round_train_loss(data: dict[str, Any]) -> float | None:
    return number(_section(data, FIT_ROUND_LOSSES).get(BACKWARD))


class TrainLossSource(Enum):
    """Where a round's training loss was read; the value says it in words, for a view's note or legend."""

    SERVER = "the FL server's aggregate"
    # Unweighted: FL4Health's reports hold no training sample counts (a client returns its count to the FL server,
    # not to its report), so the clients' losses cannot be weighted the way a server weighs them.
    CLIENTS = "the clients' mean, unweighted"


@dataclass(frozen=True)
class TrainLoss:
    value: float | None
    source: TrainLossSource | None


def round_train_loss(server: dict[str, Any], clients: Sequence[dict[str, Any]]) -> TrainLoss:
    """A round's training loss from whichever report holds it: the server's `fit_round_metrics."train - loss"`
    (our reporter writes it), else the mean of the clients' `fit_round_losses.backward` (FL4Health's layout) once
    the server says the round's fit is over, so that a mean is never taken over the clients that happen to have
    reported so far."""
    aggregated = number(_section(server, FIT_ROUND_METRICS).get(TRAIN_LOSS))
    if aggregated is not None:
        return TrainLoss(aggregated, TrainLossSource.SERVER)
    fit_over = FIT_ROUND_END in server or FIT_ROUND_METRICS in server or server_round_finished(server)
    losses = [loss for data in clients if (loss := client_round_train_loss(data)) is not None]
    if not fit_over or not losses:
        return TrainLoss(None, None)
    # A plain sum: a diverged client's inf or NaN makes the mean non-finite, as it should (math.fsum would raise).
    return TrainLoss(sum(losses) / len(losses), TrainLossSource.CLIENTS)


def current_round(server_report: dict[str, Any]) -> int:
    """The last round the FL server finished (`eval_round_end`, as FLorist's UI counts them); 0 before the first."""
    rounds = _section(server_report, ROUNDS)
    finished = [
        int(n) for n, data in rounds.items() if n.isdigit() and isinstance(data, dict) and server_round_finished(data)
    ]
    return max(finished, default=0)
