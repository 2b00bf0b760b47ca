"""CreateJob validation: every problem is reported, as a field violation, all at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from florist_grpc.domain.catalog import STRATEGIES, Catalog, ModelSpec
from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.domain.model import Client, Job
from florist_grpc.domain.validation import validate_job


def make_job(**overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "id": "j",
        "model": "MLP",
        "strategy": "FEDAVG",
        "optimizer": "SGD",
        "client_type": "FEDAVG",
        "server_config": {"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1},
        "clients": [Client(data_path="/data/c0.pt")],
        "create_time": datetime.now(UTC),
    }
    fields.update(overrides)
    return Job(**fields)


def violations(job: Job) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        validate_job(job)
    return {v.field: v.description for v in raised.value.violations}


def test_a_valid_job_passes() -> None:
    validate_job(make_job())


def test_every_strategy_accepts_its_own_minimal_config() -> None:
    fedprox = {
        "adapt_proximal_weight": True,
        "initial_proximal_weight": 0.1,
        "proximal_weight_delta": 0.1,
        "proximal_weight_patience": 2,
    }
    for name, spec in STRATEGIES.items():
        config = {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1, **(fedprox if name == "FEDPROX" else {})}
        validate_job(make_job(strategy=name, client_type=spec.client_types[0], server_config=config))


def test_unknown_catalog_names_are_reported_per_field() -> None:
    found = violations(make_job(model="GPT", optimizer="LION", strategy="MAGIC"))
    assert set(found) == {"job.model", "job.optimizer", "job.strategy"}
    assert "MLP" in found["job.model"]


def test_client_type_must_be_one_the_strategy_accepts() -> None:
    found = violations(make_job(client_type="FEDPROX"))
    assert "FEDAVG" in found["job.client_type"]


def test_server_config_missing_keys_wrong_types_ranges_and_unknown_keys_all_reported() -> None:
    found = violations(make_job(server_config={"n_server_rounds": 0, "batch_size": "big", "extra": 1}))
    assert found.keys() == {
        "job.server_config.n_server_rounds",
        "job.server_config.batch_size",
        "job.server_config.local_epochs",
        "job.server_config.extra",
    }
    assert "minimum" in found["job.server_config.n_server_rounds"]
    assert "integer" in found["job.server_config.batch_size"]
    assert found["job.server_config.local_epochs"] == "is required"
    assert "unknown key" in found["job.server_config.extra"]


def test_fedprox_requires_its_four_keys() -> None:
    found = violations(make_job(strategy="FEDPROX", client_type="FEDPROX"))
    assert {
        f"job.server_config.{k}"
        for k in (
            "adapt_proximal_weight",
            "initial_proximal_weight",
            "proximal_weight_delta",
            "proximal_weight_patience",
        )
    } <= found.keys()


def test_a_job_needs_clients_with_data_paths() -> None:
    assert "job.clients" in violations(make_job(clients=[]))
    found = violations(make_job(clients=[Client(data_path=" "), Client(data_path="/d")]))
    assert found.keys() == {"job.clients[0].data_path"}


def test_a_relative_data_path_of_a_client_without_an_agent_is_refused_naming_the_field() -> None:
    # serve would otherwise read it relative to its own working directory: a guess the caller never made.
    found = violations(make_job(clients=[Client(data_path="/abs/c0.pt"), Client(data_path="data/c1.pt")]))
    assert found.keys() == {"job.clients[1].data_path"}
    assert "absolute" in found["job.clients[1].data_path"]


def test_an_agent_client_keeps_its_data_path_relative_to_the_agent_data_root() -> None:
    validate_job(make_job(clients=[Client(data_path="c0.pt", agent="site-a")]))


def test_every_number_in_every_strategy_schema_has_a_maximum() -> None:
    for name, spec in STRATEGIES.items():
        for key, prop in spec.config_schema["properties"].items():
            if prop.get("type") in ("number", "integer"):
                assert "maximum" in prop or "exclusiveMaximum" in prop, (name, key)


def test_fedopt_rates_beyond_their_maximum_are_reported() -> None:
    config = {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1, "server_learning_rate": 1e12, "tau": 1e9}
    found = violations(make_job(strategy="FEDADAM", server_config=config))
    assert found["job.server_config.server_learning_rate"] == "is above the maximum 1000"
    assert found["job.server_config.tau"] == "is above the maximum 1"


def test_non_finite_numbers_are_reported_once_per_field_without_echoing_the_value() -> None:
    config = {"n_server_rounds": float("nan"), "batch_size": 8, "local_epochs": 1, "learning_rate": float("inf")}
    found = violations(make_job(server_config=config))
    assert found == {
        "job.server_config.n_server_rounds": "must be a finite number",
        "job.server_config.learning_rate": "must be a finite number",
    }


def test_huge_values_and_keys_are_not_echoed_in_full() -> None:
    config = {"n_server_rounds": "x" * 100_000, "batch_size": 8, "local_epochs": 1, "k" * 100_000: 1}
    found = violations(make_job(server_config=config, model="m" * 100_000))
    assert all(len(field) < 300 and len(description) < 300 for field, description in found.items())


def test_model_config_is_validated_against_the_models_schema() -> None:
    validate_job(make_job(model_config={"hidden_sizes": [128, 32], "dropout": 0.1}))
    validate_job(make_job(model="CNN", model_config={"channels": [8], "hidden_size": 16}))
    found = violations(make_job(model_config={"hidden_sizes": [0], "dropout": 1.5, "depth": 3}))
    assert set(found) == {"job.model_config.hidden_sizes.0", "job.model_config.dropout", "job.model_config.depth"}
    assert "unknown key" in found["job.model_config.depth"]
    assert set(violations(make_job(model="MNIST_CNN", model_config={"channels": [4]}))) == {"job.model_config.channels"}


def test_a_plugin_model_is_validated_against_its_own_schema() -> None:
    schema = {"type": "object", "properties": {"width": {"type": "integer", "minimum": 1}}, "required": ["width"]}
    plugin = ModelSpec("Tiny", "A plugin.", (), 0, schema, "tiny==1.0")
    catalog, skipped = Catalog.with_plugins([plugin, ModelSpec("MLP", "Impostor.", (), 0, {}, "evil==6.6.6")])
    assert skipped and "MLP" in skipped[0] and catalog.models["MLP"].source == "builtin"
    validate_job(make_job(model="Tiny", model_config={"width": 3}), catalog=catalog)
    with pytest.raises(InvalidArgument) as raised:
        validate_job(make_job(model="Tiny", model_config={"width": 0}), catalog=catalog)
    assert [v.field for v in raised.value.violations] == ["job.model_config.width"]
    assert "job.model" in violations(make_job(model="Tiny"))  # not in the builtin catalog


def test_every_strategy_takes_an_optional_boolean_stop_on_divergence_defaulting_to_true() -> None:
    for name, spec in STRATEGIES.items():
        prop = spec.config_schema["properties"]["stop_on_divergence"]
        assert (prop["type"], prop["default"]) == ("boolean", True), name
        assert "NaN" in prop["description"], name
        assert "stop_on_divergence" not in spec.config_schema["required"], name
    for value in (True, False):
        config = {"n_server_rounds": 2, "batch_size": 8, "local_epochs": 1, "stop_on_divergence": value}
        validate_job(make_job(server_config=config))


def test_stop_on_divergence_must_be_a_boolean() -> None:
    for value in ("no", 0, 1.0):
        config = {"n_server_rounds": 2, "batch_size": 8, "local_epochs": 1, "stop_on_divergence": value}
        found = violations(make_job(server_config=config))
        assert found == {"job.server_config.stop_on_divergence": "must be of type boolean"}, value
