"""What the control plane hands an FL process: one JSON document on its command line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ClientRun:
        return cls(**json.loads(text))
