"""When a round counts as diverged, and what the FL server's strategy does then (real Flower FedAvg, real Redis;
only the client manager is a stub: no FL client is needed to aggregate evaluation results)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import redis
from flwr.common import Code, EvaluateRes, Status, ndarrays_to_parameters

from florist_grpc.domain.divergence import diverged, divergence_message
from florist_grpc.domain.training import training_config
from florist_grpc.fl.flower_api import StopRun
from florist_grpc.fl.reporter import RedisReporter
from florist_grpc.fl.strategies import ReportingStrategy, build_base_strategy

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("loss", "losses_reported", "expected"),
    [
        (NAN, 2, True),
        (INF, 1, True),
        (-INF, 1, True),
        (1e30, 2, False),
        (NAN, 0, False),  # no client evaluated: the aggregate is no loss of anyone's
        (None, 0, False),
    ],
)
def test_a_round_diverges_when_its_aggregated_loss_is_non_finite_and_some_client_reported_one(
    loss: float | None, losses_reported: int, expected: bool
) -> None:
    assert diverged(loss, losses_reported) is expected


def test_the_message_names_the_loss_and_round_as_reported_and_nothing_without_the_key() -> None:
    assert divergence_message({"diverged": {"round": 7.0, "loss": "-Infinity"}}) == (
        "diverged: aggregated val loss -Infinity at round 7"
    )
    assert divergence_message({"fit_end": "t", "rounds": {"1": {"val - loss - aggregated": "NaN"}}}) is None


class _NoClients:
    """Flower's FedAvg asks a client manager whom to evaluate; the test hands it the results directly."""

    def num_available(self) -> int:
        return 2

    def sample(self, num_clients: int, min_num_clients: int | None = None) -> list[Any]:
        return []


def evaluated(*losses: float) -> list[tuple[Any, EvaluateRes]]:
    return [(None, EvaluateRes(Status(Code.OK, ""), loss, 10, {})) for loss in losses]


def strategy_for(redis_url: str, uuid: str, stop_on_divergence: bool) -> ReportingStrategy:
    initial = ndarrays_to_parameters([])
    training = training_config("FEDAVG", {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1})
    inner = build_base_strategy("FEDAVG", training, 2, initial, None)
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    reporter = RedisReporter(f"{host}:{port}", uuid)
    strategy = ReportingStrategy(inner, reporter, stop_on_divergence=stop_on_divergence)
    strategy.configure_evaluate(1, initial, _NoClients())  # starts the round's clock, as Flower does
    return strategy


def stored(redis_url: str, uuid: str) -> dict[str, Any]:
    with redis.Redis.from_url(redis_url) as client:
        report: dict[str, Any] = json.loads(client.get(uuid) or b"{}")
    return report


def test_a_diverged_round_stops_the_run_and_the_report_says_where(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "s1", stop_on_divergence=True)
    with pytest.raises(StopRun, match="round 1"):
        strategy.aggregate_evaluate(1, evaluated(NAN, 0.5), [])
    report = stored(redis_url, "s1")
    assert report["diverged"] == {"round": 1, "loss": "NaN"} == strategy.divergence
    assert report["rounds"]["1"]["val - loss - aggregated"] == "NaN"


def test_with_stop_on_divergence_false_a_diverged_round_goes_on_unmarked(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "s2", stop_on_divergence=False)
    loss, _ = strategy.aggregate_evaluate(1, evaluated(INF, 0.5), [])
    assert loss == INF and strategy.divergence is None
    report = stored(redis_url, "s2")
    assert "diverged" not in report and report["rounds"]["1"]["val - loss - aggregated"] == "Infinity"


def test_a_round_no_client_evaluated_is_no_divergence(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "s3", stop_on_divergence=True)
    loss, _ = strategy.aggregate_evaluate(1, [], [])
    assert loss is None and strategy.divergence is None
    report = stored(redis_url, "s3")
    # No aggregated loss to write (FL4Health writes none either), and no verdict; the round still ends.
    assert "diverged" not in report and "val - loss - aggregated" not in report["rounds"]["1"]
    assert "eval_round_end" in report["rounds"]["1"]


def test_a_finite_round_goes_on(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "s4", stop_on_divergence=True)
    loss, _ = strategy.aggregate_evaluate(1, evaluated(1e30, 0.5), [])
    assert loss is not None and math.isfinite(loss) and strategy.divergence is None
