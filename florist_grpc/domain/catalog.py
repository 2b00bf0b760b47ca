"""What a job may name: models, strategies and optimizers, with the JSON Schema of each one's settings.

This module is the registry: a request names an entry, never code to import. It holds metadata only (no torch),
so the control plane starts fast; florist_grpc/fl builds the real objects from these names. The builtin models
are listed here; models of installed plugins are described by a subprocess at startup and join them in a
`Catalog` (the runtime object validation and GetCatalog read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from florist_grpc.domain.strategies import (
    MAX_CLIENTS,
    STRATEGIES,
    JsonSchema,
    StrategySpec,
    config_schema,
)

BUILTIN = "builtin"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    # () = one sample's shape is taken from the clients' data; 0 = the number of classes too (largest label + 1).
    input_shape: tuple[int, ...]
    num_classes: int
    # JSON Schema of Job.model_config for this model.
    config_schema: JsonSchema = field(default_factory=lambda: _model_schema("model", {}))
    # "builtin" or the plugin's distribution as "package==version".
    source: str = BUILTIN
    # How many dimensions one sample must have (0 = any), checked with the data before launch.
    sample_rank: int = 0


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    description: str
    # server_config keys this optimizer reads, with their defaults (FLorist's / torch's).
    defaults: dict[str, float] = field(default_factory=dict)


def _model_schema(title: str, properties: dict[str, Any]) -> JsonSchema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{title} model_config",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


_DROPOUT = {
    "type": "number",
    "minimum": 0,
    "exclusiveMaximum": 1,
    "default": 0.0,
    "description": "Dropout probability before each hidden dense layer's activation output.",
}
_LAYER_SIZE = {"type": "integer", "minimum": 1, "maximum": 4096}

# Models whose sizes come from the data have input_shape () and num_classes 0; MNIST_CNN keeps FLorist's shape.
BUILTIN_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            "MLP",
            "Multi-layer perceptron sized by the data: any sample shape (flattened), classes from the labels.",
            (),
            0,
            _model_schema(
                "MLP",
                {
                    "hidden_sizes": {
                        "type": "array",
                        "items": _LAYER_SIZE,
                        "maxItems": 8,
                        "default": [64],
                        "description": "Width of each hidden layer, in order; [] = a linear model.",
                    },
                    "dropout": _DROPOUT,
                },
            ),
        ),
        ModelSpec(
            "CNN",
            "Convolutional net sized by the data: samples [channels, height, width], classes from the labels.",
            (),
            0,
            _model_schema(
                "CNN",
                {
                    "channels": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1, "maximum": 1024},
                        "minItems": 1,
                        "maxItems": 6,
                        "default": [16, 32],
                        "description": "Output channels of each 3x3 convolution (each followed by 2x2 max-pooling "
                        "while the image is at least 2x2).",
                    },
                    "hidden_size": {**_LAYER_SIZE, "default": 64, "description": "Width of the dense layer."},
                    "dropout": _DROPOUT,
                },
            ),
            sample_rank=3,
        ),
        ModelSpec(
            "MNIST_CNN",
            "FLorist's small CNN for 28x28 grayscale images (two conv + two dense layers), 10 classes.",
            (1, 28, 28),
            10,
            _model_schema("MNIST_CNN", {}),
        ),
    )
}
MODELS = BUILTIN_MODELS


def _optimizer(name: str, summary: str, defaults: dict[str, float]) -> OptimizerSpec:
    # The description lists the keys with their defaults, from the one dict that holds them.
    keys = ", ".join(f"{key} ({value:g})" for key, value in defaults.items())
    return OptimizerSpec(name, f"{summary}; keys {keys}.", defaults)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    o.name: o
    for o in (
        _optimizer("SGD", "Stochastic gradient descent", {"learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.0}),
        _optimizer("ADAM", "Adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "weight_decay": 0.0}),
        _optimizer("ADAMW", "AdamW", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "weight_decay": 0.01}),
    )
}


@dataclass(frozen=True)
class Catalog:
    """Everything a job may name, as served by GetCatalog and enforced by CreateJob."""

    models: dict[str, ModelSpec]
    strategies: dict[str, StrategySpec] = field(default_factory=lambda: STRATEGIES)
    optimizers: dict[str, OptimizerSpec] = field(default_factory=lambda: OPTIMIZERS)

    @classmethod
    def with_plugins(cls, plugins: list[ModelSpec]) -> tuple[Catalog, list[str]]:
        """The builtin models plus `plugins`, and why any plugin was left out (a name already taken)."""
        models = dict(BUILTIN_MODELS)
        skipped = []
        for spec in plugins:
            if spec.name in models:
                skipped.append(f"model plugin {spec.name} ({spec.source}) skipped: the name is already taken")
                continue
            models[spec.name] = spec
        return cls(models), skipped


DEFAULT_CATALOG = Catalog(BUILTIN_MODELS)

__all__ = [
    "BUILTIN",
    "DEFAULT_CATALOG",
    "MAX_CLIENTS",
    "MODELS",
    "OPTIMIZERS",
    "STRATEGIES",
    "Catalog",
    "JsonSchema",
    "ModelSpec",
    "OptimizerSpec",
    "StrategySpec",
    "config_schema",
]
