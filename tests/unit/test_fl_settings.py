"""The FL processes build their optimizer and Flower strategy from a job's TrainingConfig: what the user set, else
the schema's default (the optimizer's own for the optimizer's keys)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from flwr.common import ndarrays_to_parameters
from flwr.server.strategy import FedAdagrad, FedAdam, FedAvgM, FedTrimmedAvg, FedYogi, Krum

from florist_grpc.domain.training import training_config
from florist_grpc.fl.optimizers import build_optimizer
from florist_grpc.fl.strategies import ProximalWeight, build_base_strategy
from tests.unit.test_training_config import FEDPROX, minimal


def optimizer_settings(name: str, **config: Any) -> dict[str, Any]:
    training = training_config("FEDAVG", {**minimal("FEDAVG"), **config})
    group = build_optimizer(name, torch.nn.Linear(2, 2).parameters(), training).param_groups[0]
    return {key: group[key] for key in ("lr", "weight_decay", "momentum", "betas") if key in group}


def test_an_optimizer_setting_left_out_is_that_optimizers_default() -> None:
    assert optimizer_settings("SGD") == {"lr": 0.01, "weight_decay": 0.0, "momentum": 0.9}
    assert optimizer_settings("ADAM") == {"lr": 0.001, "weight_decay": 0.0, "betas": (0.9, 0.999)}
    assert optimizer_settings("ADAMW") == {"lr": 0.001, "weight_decay": 0.01, "betas": (0.9, 0.999)}


def test_an_optimizer_setting_the_user_chose_wins() -> None:
    chosen = optimizer_settings("ADAMW", learning_rate=0.05, beta_2=0.9, weight_decay=0.0)
    assert chosen == {"lr": 0.05, "weight_decay": 0.0, "betas": (0.9, 0.9)}


def strategy(name: str, **config: Any) -> Any:
    training = training_config(name, {**minimal(name), **config})
    return build_base_strategy(name, training, 2, ndarrays_to_parameters([]), None)


@pytest.mark.parametrize("name, cls", [("FEDADAM", FedAdam), ("FEDYOGI", FedYogi), ("FEDADAGRAD", FedAdagrad)])
def test_fedopt_strategies_get_the_schemas_server_settings(name: str, cls: type[Any]) -> None:
    built = strategy(name)
    assert type(built) is cls
    assert (built.eta, built.tau) == (0.1, 1e-9)
    if cls is not FedAdagrad:
        assert (built.beta_1, built.beta_2) == (0.9, 0.99)
    assert strategy(name, server_learning_rate=0.5, learning_rate=0.02).eta == 0.5
    assert strategy(name, learning_rate=0.02).eta_l == 0.02


def test_fedavgm_trimmed_mean_and_krum_get_their_settings() -> None:
    built = strategy("FEDAVGM")
    assert type(built) is FedAvgM and (built.server_learning_rate, built.server_momentum) == (1.0, 0.9)
    built = strategy("FEDTRIMMEDAVG", beta=0.1)
    assert type(built) is FedTrimmedAvg and built.beta == 0.1
    built = strategy("KRUM", num_clients_to_keep=2)
    assert type(built) is Krum and (built.num_malicious_clients, built.num_clients_to_keep) == (0, 2)


def test_the_fedprox_weight_starts_and_adapts_as_configured() -> None:
    training = training_config("FEDPROX", minimal("FEDPROX"))
    assert training.fedprox is not None
    weight = ProximalWeight(training.fedprox)
    assert weight.value == FEDPROX["initial_proximal_weight"]
    weight.update(1.0)  # an improvement lowers mu by the delta
    assert weight.value == pytest.approx(0.1 - 0.05)
