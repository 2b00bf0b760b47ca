"""The aggregation strategies a job may name, each with the JSON Schema of its `server_config`.

Every number has bounds: a schema is what CreateJob enforces and what GetCatalog publishes, so a diverging job
can only come from settings a user chose inside documented limits. An optional key's default is written once, as
its schema's `default`: the catalog publishes it and domain/training.py applies it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    client_types: tuple[str, ...]
    config_schema: JsonSchema


_POSITIVE_INT = {"type": "integer", "minimum": 1}
_COMMON_PROPERTIES: dict[str, Any] = {
    "n_server_rounds": {**_POSITIVE_INT, "maximum": 10_000, "description": "Number of FL rounds."},
    "batch_size": {**_POSITIVE_INT, "maximum": 65_536, "description": "Local mini-batch size."},
    "local_epochs": {**_POSITIVE_INT, "maximum": 1_000, "description": "Local epochs per round."},
    # The optimizer's keys have no default here: theirs differ per optimizer (catalog.OPTIMIZERS says them).
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "description": "Client optimizer lr."},
    "momentum": {"type": "number", "minimum": 0, "maximum": 1, "description": "SGD momentum."},
    "weight_decay": {"type": "number", "minimum": 0, "maximum": 1, "description": "L2 penalty of the optimizer."},
    "beta_1": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "Adam/AdamW beta 1."},
    "beta_2": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "Adam/AdamW beta 2."},
    "validation_fraction": {
        "type": "number",
        "minimum": 0,
        "maximum": 0.9,
        "default": 0.2,
        "description": "Share of each client's data held out for evaluation.",
    },
    "seed": {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**32 - 1,  # numpy's seed range
        "default": 0,
        "description": "Seed of the model's initial weights, the train/validation split and the batch order: "
        "the same seed gives the same per-round losses on a rerun.",
    },
    "checkpoint_rounds": {
        "type": "integer",
        "minimum": 0,
        "maximum": 10_000,
        "default": 0,
        "description": "The FL server saves the global model after every round and always keeps the latest "
        "(the final one); with N > 0 it also keeps the model of every N-th round (0: the final only).",
    },
    "round_timeout_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 86_400,
        "default": 300.0,
        "description": "Longest a round may take before the server gives up.",
    },
    "client_wait_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 3_600,
        "default": 60.0,
        "description": "Longest the server waits for all clients to connect.",
    },
    "stop_on_divergence": {
        "type": "boolean",
        "default": True,
        "description": "Stop at the first round whose aggregated validation loss is NaN or infinite (while at "
        "least one client reported a loss for it); the job then ends FINISHED_WITH_ERROR, saying so. false lets "
        "a diverged run go on through every round.",
    },
}
_COMMON_REQUIRED = ["n_server_rounds", "batch_size", "local_epochs"]


def _schema(title: str, extra: dict[str, Any] | None = None, required: list[str] | None = None) -> JsonSchema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{title} server_config",
        "type": "object",
        "properties": {**_COMMON_PROPERTIES, **(extra or {})},
        "required": _COMMON_REQUIRED + (required or []),
        "additionalProperties": False,
    }


_NUMBER = {"type": "number"}
# Every number has a maximum: far beyond any useful setting (FedOpt papers tune eta within 1e-3..10), yet a
# bound, so a typo or a hostile value cannot reach Flower or torch. A diverging run inside them is still
# possible and handled (non-finite report values are stored as strings).
_MAX_SERVER_LEARNING_RATE = 1_000
# Most clients a job may have (validation enforces it; a strategy cannot count more).
MAX_CLIENTS = 256
_FEDOPT = {
    "server_learning_rate": {
        **_NUMBER,
        "exclusiveMinimum": 0,
        "maximum": _MAX_SERVER_LEARNING_RATE,
        "default": 0.1,
        "description": "Server-side step size eta.",
    },
    "server_beta_1": {**_NUMBER, "minimum": 0, "exclusiveMaximum": 1, "default": 0.9, "description": "Server beta 1."},
    "server_beta_2": {**_NUMBER, "minimum": 0, "exclusiveMaximum": 1, "default": 0.99, "description": "Server beta 2."},
    "tau": {**_NUMBER, "exclusiveMinimum": 0, "maximum": 1, "default": 1e-9, "description": "Adaptivity degree."},
}
_FEDPROX = {
    "adapt_proximal_weight": {"type": "boolean", "description": "Adapt the proximal weight to the training loss."},
    "initial_proximal_weight": {
        **_NUMBER,
        "minimum": 0,
        "maximum": 1_000,
        "description": "Proximal weight mu of the first round.",
    },
    "proximal_weight_delta": {**_NUMBER, "minimum": 0, "maximum": 1_000, "description": "Step by which mu is adapted."},
    "proximal_weight_patience": {
        "type": "integer",
        "minimum": 0,
        "maximum": 10_000,
        "description": "Rounds without improvement.",
    },
}

STRATEGIES: dict[str, StrategySpec] = {
    s.name: s
    for s in (
        StrategySpec("FEDAVG", "Federated averaging (McMahan et al.).", ("FEDAVG",), _schema("FEDAVG")),
        StrategySpec(
            "FEDPROX",
            "FedProx: FedAvg with a proximal term of weight mu on the clients, optionally adapted (FL4Health).",
            ("FEDPROX",),
            _schema("FEDPROX", _FEDPROX, list(_FEDPROX)),
        ),
        StrategySpec("FEDADAM", "FedOpt with Adam on the server.", ("FEDAVG",), _schema("FEDADAM", _FEDOPT)),
        StrategySpec("FEDYOGI", "FedOpt with Yogi on the server.", ("FEDAVG",), _schema("FEDYOGI", _FEDOPT)),
        StrategySpec("FEDADAGRAD", "FedOpt with Adagrad on the server.", ("FEDAVG",), _schema("FEDADAGRAD", _FEDOPT)),
        StrategySpec(
            "FEDAVGM",
            "FedAvg with server momentum.",
            ("FEDAVG",),
            _schema(
                "FEDAVGM",
                {
                    "server_learning_rate": {
                        **_NUMBER,
                        "exclusiveMinimum": 0,
                        "maximum": _MAX_SERVER_LEARNING_RATE,
                        "default": 1.0,
                        "description": "Server lr.",
                    },
                    "server_momentum": {
                        **_NUMBER,
                        "minimum": 0,
                        "maximum": 1,
                        "default": 0.9,
                        "description": "Momentum.",
                    },
                },
            ),
        ),
        StrategySpec("FEDMEDIAN", "Coordinate-wise median of client updates.", ("FEDAVG",), _schema("FEDMEDIAN")),
        StrategySpec(
            "FEDTRIMMEDAVG",
            "Trimmed mean of client updates.",
            ("FEDAVG",),
            _schema(
                "FEDTRIMMEDAVG",
                {
                    "beta": {
                        **_NUMBER,
                        "minimum": 0,
                        "exclusiveMaximum": 0.5,
                        "default": 0.2,
                        "description": "Share cut each end.",
                    }
                },
            ),
        ),
        StrategySpec(
            "KRUM",
            "Krum: Byzantine-robust selection of the update closest to its neighbours.",
            ("FEDAVG",),
            _schema(
                "KRUM",
                {
                    "num_malicious_clients": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_CLIENTS,
                        "default": 0,
                        "description": "Assumed attackers.",
                    },
                    "num_clients_to_keep": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_CLIENTS,
                        "default": 0,
                        "description": "0 = Krum, >0 = MKrum.",
                    },
                },
            ),
        ),
    )
}


def config_schema(strategy: str) -> JsonSchema:
    """A copy of the strategy's schema (callers may serialise or mutate it)."""
    return copy.deepcopy(STRATEGIES[strategy].config_schema)
