"""A job's TrainingConfig: every schema key a typed field, every default taken from the schema and nowhere else."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from florist_grpc.domain.catalog import STRATEGIES
from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.domain.training import (
    SECTIONS,
    FedAvgMSettings,
    FedOptSettings,
    TrainingConfig,
    training_config,
)
from florist_grpc.launch.agent_codec import from_struct, to_struct

FEDPROX = {
    "adapt_proximal_weight": True,
    "initial_proximal_weight": 0.1,
    "proximal_weight_delta": 0.05,
    "proximal_weight_patience": 2,
}
# A valid value for every key of every schema, none of them its default.
EVERY_KEY: dict[str, Any] = {
    "n_server_rounds": 4,
    "batch_size": 16,
    "local_epochs": 2,
    "learning_rate": 0.05,
    "momentum": 0.5,
    "weight_decay": 0.001,
    "beta_1": 0.8,
    "beta_2": 0.95,
    "validation_fraction": 0.3,
    "seed": 7,
    "checkpoint_rounds": 2,
    "round_timeout_seconds": 120.5,
    "client_wait_seconds": 30.0,
    "stop_on_divergence": False,
    **FEDPROX,
    "server_learning_rate": 0.5,
    "server_beta_1": 0.8,
    "server_beta_2": 0.9,
    "tau": 0.001,
    "server_momentum": 0.7,
    "beta": 0.1,
    "num_malicious_clients": 1,
    "num_clients_to_keep": 2,
}
JSON_TYPES = {"integer": int, "number": float, "boolean": bool}


def properties(strategy: str) -> dict[str, Any]:
    props: dict[str, Any] = STRATEGIES[strategy].config_schema["properties"]
    return props


def minimal(strategy: str) -> dict[str, Any]:
    """The required keys only."""
    return {key: EVERY_KEY[key] for key in STRATEGIES[strategy].config_schema["required"]}


def full(strategy: str) -> dict[str, Any]:
    return {key: EVERY_KEY[key] for key in properties(strategy)}


def field_types(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def keys_of(training: TrainingConfig) -> set[str]:
    """The schema keys `training` has a field for: the common ones and those of its strategy's section."""
    common = {f.name for f in dataclasses.fields(TrainingConfig) if f.name not in SECTIONS}
    sections = [getattr(training, name) for name in SECTIONS if getattr(training, name) is not None]
    assert len(sections) <= 1, sections
    return common | {f.name for s in sections for f in dataclasses.fields(s)}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_minimal_config_takes_every_other_setting_from_the_strategys_schema(strategy: str) -> None:
    defaults = {key: prop["default"] for key, prop in properties(strategy).items() if "default" in prop}
    assert training_config(strategy, minimal(strategy)).to_server_config() == {**defaults, **minimal(strategy)}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_key_of_a_strategys_schema_has_a_field_of_its_type_and_every_field_a_key(strategy: str) -> None:
    training = training_config(strategy, minimal(strategy))
    assert keys_of(training) == set(properties(strategy))
    section = next((getattr(training, name) for name in SECTIONS if getattr(training, name) is not None), None)
    types = field_types(TrainingConfig) | (field_types(type(section)) if section is not None else {})
    for key, prop in properties(strategy).items():
        expected = JSON_TYPES[prop["type"]]
        assert types[key] in (expected, expected | None), (key, types[key])


def test_every_section_field_is_listed_and_belongs_to_some_strategy() -> None:
    sections = {
        name: arg
        for name, hint in field_types(TrainingConfig).items()
        for arg in typing.get_args(hint)
        if dataclasses.is_dataclass(arg)
    }
    assert sections == SECTIONS
    built = [training_config(strategy, minimal(strategy)) for strategy in STRATEGIES]
    assert {name for training in built for name in SECTIONS if getattr(training, name) is not None} == set(SECTIONS)


def test_the_schema_is_the_only_place_a_default_is_written() -> None:
    # A field may default only to None ("not this job's"); a value left out comes from the schema.
    for cls in (TrainingConfig, *SECTIONS.values()):
        for field in dataclasses.fields(cls):
            assert field.default in (None, dataclasses.MISSING), (cls.__name__, field.name)
            assert field.default_factory is dataclasses.MISSING, (cls.__name__, field.name)


def test_a_strategy_specific_default_is_that_strategys() -> None:
    assert training_config("FEDADAM", minimal("FEDADAM")).fedopt == FedOptSettings(0.1, 0.9, 0.99, 1e-9)
    assert training_config("FEDAVGM", minimal("FEDAVGM")).fedavgm == FedAvgMSettings(1.0, 0.9)


def test_what_the_user_set_wins_over_the_default() -> None:
    training = training_config("FEDAVGM", {**minimal("FEDAVGM"), "server_learning_rate": 2.5, "seed": 3})
    assert training.fedavgm == FedAvgMSettings(2.5, 0.9)
    assert training.seed == 3
    assert training.stop_on_divergence is True


def test_optimizer_keys_left_out_stay_none_for_the_optimizers_own_defaults() -> None:
    training = training_config("FEDAVG", {**minimal("FEDAVG"), "momentum": 0.0})
    assert (training.learning_rate, training.momentum, training.weight_decay) == (None, 0.0, None)
    assert "learning_rate" not in training.to_server_config()


def test_integral_numbers_from_a_struct_are_ints_and_numbers_floats() -> None:
    # A Struct holds only doubles; whole_numbers (api/convert.py) may also turn a number's 1.0 into 1.
    struct_like = {"n_server_rounds": 3.0, "batch_size": 32.0, "local_epochs": 1.0, "num_clients_to_keep": 2.0}
    training = training_config("KRUM", {**struct_like, "learning_rate": 1, "client_wait_seconds": 30})
    assert (training.n_server_rounds, training.batch_size, training.local_epochs) == (3, 32, 1)
    assert training.krum is not None and type(training.krum.num_clients_to_keep) is int
    assert type(training.n_server_rounds) is int and type(training.seed) is int
    assert type(training.learning_rate) is float and type(training.client_wait_seconds) is float
    assert type(training.round_timeout_seconds) is float


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_complete_server_config_round_trips_through_a_struct(strategy: str) -> None:
    # What an agent receives in LaunchClient.server_config and builds its client's TrainingConfig from.
    training = training_config(strategy, full(strategy))
    assert training.to_server_config() == full(strategy)
    assert TrainingConfig.from_server_config(from_struct(to_struct(training.to_server_config()))) == training


def test_an_incomplete_ill_typed_or_unknown_server_config_is_refused_naming_each_key() -> None:
    config = {**minimal("FEDAVG"), "batch_size": 2.5, "stop_on_divergence": "no", "extra": 1}
    del config["n_server_rounds"]
    with pytest.raises(InvalidArgument) as raised:
        TrainingConfig.from_server_config(config)
    found = {v.field: v.description for v in raised.value.violations}
    assert set(found) == {
        "server_config.n_server_rounds",
        "server_config.batch_size",
        "server_config.stop_on_divergence",
        "server_config.extra",
        # The defaults are applied by training_config, not by the inverse of to_server_config.
        "server_config.validation_fraction",
        "server_config.seed",
        "server_config.checkpoint_rounds",
        "server_config.round_timeout_seconds",
        "server_config.client_wait_seconds",
    }
    assert found["server_config.n_server_rounds"] == "is required"
    assert found["server_config.batch_size"].startswith("must be of type integer")
    assert found["server_config.extra"] == "unknown key"
