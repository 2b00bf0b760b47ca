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
    # TLS for FL traffic (jobs with agent-run clients on a control plane with a certificate): PEM file paths.
    tls_cert_file: str = ""
    tls_key_file: str = ""
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
    # "auto" (first CUDA device if any, else cpu), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # PEM file of the CA to verify a TLS FL server with; empty = plaintext.
    root_certificates_file: str = ""
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    label_column: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ClientRun:
        return cls(**json.loads(text))
