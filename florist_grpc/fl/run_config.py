"""What the control plane hands an FL process: one JSON document on its command line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServerRun:
    bind_address: str
    redis_address: str
    uuid: str
    model: str
    strategy: str
    n_clients: int
    server_config: dict[str, Any]
    # The model's sizes (decided from the clients' data before launch) and its own settings.
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    # Where the global model is saved after each round ("" = not saved).
    model_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerRun:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ClientRun:
    server_address: str
    redis_address: str
    uuid: str
    model: str
    optimizer: str
    client_type: str
    data_path: str
    server_config: dict[str, Any]
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    label_column: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ClientRun:
        return cls(**json.loads(text))


# The old agent protocol has no fields for the model's sizes: they travel inside server_config under this key
# until the agent session protocol carries the whole ClientRun.
MODEL_KEY = "_florist_model"


def pack_model(run: ClientRun) -> dict[str, Any]:
    """run.server_config plus the model's sizes, settings and the label column under MODEL_KEY."""
    model = {
        "input_shape": run.input_shape,
        "num_classes": run.num_classes,
        "model_config": run.model_config,
        "label_column": run.label_column,
    }
    return {**run.server_config, MODEL_KEY: model}


def unpack_model(server_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(server_config without MODEL_KEY, the ClientRun fields it carried); numbers back to ints."""
    config = dict(server_config)
    model = dict(config.pop(MODEL_KEY, {}))
    if "input_shape" in model:
        model["input_shape"] = [int(d) for d in model["input_shape"]]
    if "num_classes" in model:
        model["num_classes"] = int(model["num_classes"])
    return config, model
