"""A job's training settings, typed: its server_config with the strategy's schema defaults applied.

Built once per launch from the job's validated server_config (`training_config`) and handed to the FL processes in
ServerRun/ClientRun, which read attributes instead of dict keys; the job keeps server_config as the user sent it.
No default is written here: an optional key's default is its schema's `default` (domain/strategies.py), except the
optimizer's keys, whose defaults differ per optimizer (catalog.OPTIMIZERS) and so stay None when left out.

Strategy-specific keys form one section per family of strategies (FedProx, FedOpt, ...) rather than optional
fields: inside a section every key is present, so the FL code reads `fedopt.tau` as a float with one check for
the section instead of one per key, and each section is what one Flower strategy constructor takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from florist_grpc.domain.errors import QUOTE_CHARS, FieldViolation, InvalidArgument, quote
from florist_grpc.domain.strategies import STRATEGIES


@dataclass(frozen=True)
class FedProxSettings:
    """FEDPROX: the proximal term's weight mu and how it adapts (all four keys are required)."""

    adapt_proximal_weight: bool
    initial_proximal_weight: float
    proximal_weight_delta: float
    proximal_weight_patience: int


@dataclass(frozen=True)
class FedOptSettings:
    """FEDADAM, FEDYOGI and FEDADAGRAD: the server's optimizer (FEDADAGRAD has no betas, and ignores them)."""

    server_learning_rate: float
    server_beta_1: float
    server_beta_2: float
    tau: float


@dataclass(frozen=True)
class FedAvgMSettings:
    """FEDAVGM: the server's step and momentum."""

    server_learning_rate: float
    server_momentum: float


@dataclass(frozen=True)
class TrimmedMeanSettings:
    """FEDTRIMMEDAVG: the share of updates cut at each end."""

    beta: float


@dataclass(frozen=True)
class KrumSettings:
    """KRUM: the attackers assumed, and how many updates Multi-Krum keeps (0 = plain Krum)."""

    num_malicious_clients: int
    num_clients_to_keep: int


@dataclass(frozen=True)
class TrainingConfig:
    """Every server_config key of a job, typed; the schemas' descriptions say what each one does."""

    n_server_rounds: int
    batch_size: int
    local_epochs: int
    validation_fraction: float
    seed: int
    checkpoint_rounds: int
    round_timeout_seconds: float
    client_wait_seconds: float
    stop_on_divergence: bool
    # The client optimizer's settings; None = the optimizer's own default.
    learning_rate: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    # The strategy's own section: the one whose keys its schema defines, if any (FEDAVG and FEDMEDIAN have none).
    fedprox: FedProxSettings | None = None
    fedopt: FedOptSettings | None = None
    fedavgm: FedAvgMSettings | None = None
    trimmed_mean: TrimmedMeanSettings | None = None
    krum: KrumSettings | None = None

    def to_server_config(self) -> dict[str, Any]:
        """These settings as a complete server_config (flat, every default spelled out, unset optimizer keys left
        out): what ServerRun/ClientRun JSON and an agent's LaunchClient carry."""
        flat: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            if name in SECTIONS:
                flat.update(value or {})
            elif value is not None:
                flat[name] = value
        return flat

    @classmethod
    def from_server_config(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """The inverse of `to_server_config`: a section is set when all of its keys are given. Integral numbers
        become ints (a protobuf Struct carries only doubles). Raises InvalidArgument naming every missing,
        ill-typed or unknown key."""
        problems: list[FieldViolation] = []
        known: set[str] = set()
        settings: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            section = SECTIONS.get(field.name)
            if section is not None:
                keys = [f.name for f in dataclasses.fields(section)]
                if all(key in values for key in keys):
                    known.update(keys)
                    settings[field.name] = section(**{key: _typed(key, values[key], problems) for key in keys})
            elif field.name in values:
                known.add(field.name)
                settings[field.name] = _typed(field.name, values[field.name], problems)
            elif field.default is dataclasses.MISSING:
                problems.append(FieldViolation(f"server_config.{field.name}", "is required"))
        unknown = sorted(set(values) - known, key=str)
        problems += [FieldViolation(f"server_config.{str(key)[:QUOTE_CHARS]}", "unknown key") for key in unknown]
        if problems:
            raise InvalidArgument(problems)
        return cls(**settings)


# TrainingConfig's strategy sections: field name -> the section's dataclass.
SECTIONS: dict[str, type[Any]] = {
    "fedprox": FedProxSettings,
    "fedopt": FedOptSettings,
    "fedavgm": FedAvgMSettings,
    "trimmed_mean": TrimmedMeanSettings,
    "krum": KrumSettings,
}
# Every key of every strategy's schema, with its JSON type (a key has the same type in every schema).
_TYPES: dict[str, str] = {
    key: prop["type"] for spec in STRATEGIES.values() for key, prop in spec.config_schema["properties"].items()
}


def _typed(key: str, value: Any, problems: list[FieldViolation]) -> Any:
    """`value` as the Python type of `key`'s schema type, or None with a problem recorded."""
    kind = _TYPES.get(key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "number" and number:
        return float(value)
    if kind == "integer" and number and float(value).is_integer():
        return int(value)
    problems.append(FieldViolation(f"server_config.{key}", f"must be of type {kind}, not {quote(value)}"))
    return None


def training_config(strategy: str, server_config: Mapping[str, Any]) -> TrainingConfig:
    """The typed settings of a validated `server_config` of `strategy`: every key it leaves out takes its
    default from the strategy's schema."""
    properties = STRATEGIES[strategy].config_schema["properties"]
    defaults = {key: prop["default"] for key, prop in properties.items() if "default" in prop}
    return TrainingConfig.from_server_config({**defaults, **server_config})
