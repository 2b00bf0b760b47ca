"""Our FL processes report what FL4Health's would for the same training: a round's training loss and accuracy
over its last local epoch, and no aggregated loss or metrics where there is nothing to aggregate (real Redis;
the client's own Flower `fit`, without a Flower server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.common import Code, EvaluateRes, Status

from florist_grpc.domain.training import training_config
from florist_grpc.fl.client import build_client
from florist_grpc.fl.last_epoch import LastEpoch
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.probe import probe
from florist_grpc.fl.run_config import ClientRun
from tests.unit.test_divergence_rule import evaluated, stored, strategy_for


def test_a_step_of_a_new_epoch_starts_the_sums_afresh_and_the_loss_is_a_mean_over_samples() -> None:
    last = LastEpoch()
    last.add(0, 9.0, 0, 32)
    last.add(1, 1.0, 32, 32)
    last.add(1, 4.0, 0, 8)  # a short last batch weighs by its samples
    assert last.loss == pytest.approx((1.0 * 32 + 4.0 * 8) / 40)
    assert last.accuracy == pytest.approx(32 / 40)


def client_run(redis_url: str, data: Path, uuid: str, local_epochs: int) -> ClientRun:
    summary = probe(str(data))
    # Plain SGD: a fresh optimizer each round then carries nothing over, so one round of one epoch from the
    # weights after an epoch is exactly the second epoch of a two-epoch round (same seed, same batch order).
    config = {"n_server_rounds": 2, "batch_size": 32, "local_epochs": local_epochs, "momentum": 0.0}
    port = redis_url.removeprefix("redis://").split("/")[0].split(":")[1]
    return ClientRun(
        "127.0.0.1:1", f"127.0.0.1:{port}", uuid, "MLP", "SGD", "FEDAVG", str(data),
        training_config("FEDAVG", config), input_shape=summary["input_shape"], num_classes=summary["label_max"] + 1,
    )  # fmt: skip


def test_a_round_of_two_local_epochs_reports_the_second_epochs_loss_and_accuracy(
    redis_url: str, tmp_path: Path
) -> None:
    (data,) = write_synthetic(tmp_path, 1, samples_per_client=200)
    two_epochs, _ = build_client(client_run(redis_url, data, "two", local_epochs=2))
    one_epoch, _ = build_client(client_run(redis_url, data, "one", local_epochs=1))
    start = [w.copy() for w in two_epochs.get_parameters({})]  # copies: a client's weights share its model's memory
    _, _, reported = two_epochs.fit(start, {"current_server_round": 1})
    after_first, _, first = one_epoch.fit(start, {"current_server_round": 1})
    _, _, second = one_epoch.fit([w.copy() for w in after_first], {"current_server_round": 2})

    assert reported["train - loss"] == pytest.approx(second["train - loss"], rel=1e-5)
    assert reported["train - prediction - accuracy"] == pytest.approx(second["train - prediction - accuracy"])
    # Not the mean over both epochs (what the round reported before): the two epochs' losses differ.
    both = (first["train - loss"] + second["train - loss"]) / 2
    assert reported["train - loss"] != pytest.approx(both, rel=1e-3)
    report = stored(redis_url, "two")["rounds"]["1"]
    assert report["fit_round_losses"] == {"backward": reported["train - loss"]}
    assert report["fit_round_metrics"] == {"train - prediction - accuracy": reported["train - prediction - accuracy"]}


def with_metrics(*accuracies: float) -> list[tuple[Any, EvaluateRes]]:
    return [(None, EvaluateRes(Status(Code.OK, ""), 0.5, 10, {"val - prediction - accuracy": a})) for a in accuracies]


def test_the_servers_evaluation_report_has_the_aggregated_metrics_when_clients_report_some(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "m1", stop_on_divergence=True)
    strategy.aggregate_evaluate(1, with_metrics(0.25, 0.75), [])
    evaluation = stored(redis_url, "m1")["rounds"]["1"]
    assert evaluation["val - loss - aggregated"] == 0.5
    assert evaluation["eval_round_metrics_aggregated"] == {"val - prediction - accuracy": 0.5}


def test_clients_that_report_only_losses_leave_no_empty_aggregated_metrics(redis_url: str) -> None:
    strategy = strategy_for(redis_url, "m2", stop_on_divergence=True)
    strategy.aggregate_evaluate(1, evaluated(0.5, 1.5), [])
    evaluation = stored(redis_url, "m2")["rounds"]["1"]
    assert evaluation["val - loss - aggregated"] == 1.0 and "eval_round_end" in evaluation
    assert "eval_round_metrics_aggregated" not in evaluation  # FL4Health omits it too, rather than writing {}
