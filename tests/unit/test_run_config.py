"""ServerRun/ClientRun, the JSON an FL process is handed: it comes back exactly, training settings included."""

from __future__ import annotations

import json

import pytest

from florist_grpc.domain.catalog import STRATEGIES
from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import ClientRun, ServerRun
from tests.unit.test_training_config import full, minimal


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_server_run_round_trips_through_json_exactly(strategy: str) -> None:
    for config in (minimal(strategy), full(strategy)):
        run = ServerRun(
            "127.0.0.1:8080", "127.0.0.1:6379", "u" * 32, "CNN", strategy, 3, training_config(strategy, config),
            tls_cert_file="/c.pem", tls_key_file="/k.pem", input_shape=[1, 28, 28], num_classes=10,
            model_config={"channels": [8], "dropout": 0.5}, model_dir="/m", redis_username="run-u",
            redis_password="pw",
        )  # fmt: skip
        assert ServerRun.from_json(run.to_json()) == run


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_client_run_round_trips_through_json_exactly(strategy: str) -> None:
    client_type = STRATEGIES[strategy].client_types[0]
    run = ClientRun(
        "127.0.0.1:8080", "127.0.0.1:6379", "u" * 32, "MLP", "ADAMW", client_type, "/data/c0.csv",
        training_config(strategy, full(strategy)), device="cuda:1", root_certificates_file="/ca.pem",
        input_shape=[20], num_classes=3, model_config={"hidden_sizes": []}, label_column="y",
        redis_username="run-u", redis_password="pw",
    )  # fmt: skip
    assert ClientRun.from_json(run.to_json()) == run


def test_the_json_carries_the_training_settings_as_a_complete_server_config_with_ints_kept() -> None:
    run = ServerRun("a:1", "r:1", "u", "MLP", "FEDAVG", 1, training_config("FEDAVG", minimal("FEDAVG")))
    carried = json.loads(run.to_json())["training"]
    assert carried == {
        "n_server_rounds": 4,
        "batch_size": 16,
        "local_epochs": 2,
        "validation_fraction": 0.2,
        "seed": 0,
        "checkpoint_rounds": 0,
        "round_timeout_seconds": 300.0,
        "client_wait_seconds": 60.0,
        "stop_on_divergence": True,
    }
    decoded = ServerRun.from_json(run.to_json()).training
    assert type(decoded.batch_size) is int and type(decoded.round_timeout_seconds) is float
