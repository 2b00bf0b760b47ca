"""What the control plane hands an FL process: one JSON document in its environment (FLORIST_RUN).

Not on its command line: the run carries the process's Redis password, and any local user can read every
process's argv (`ps`), while /proc/<pid>/environ is readable only by the process's own user. The process removes
the variable as soon as it has read it, so nothing it starts (Flower, torch workers) inherits it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from florist_grpc.domain.training import TrainingConfig

RUN_ENV = "FLORIST_RUN"


def run_environment(run_json: str) -> dict[str, str]:
    """The environment entry that hands `run_json` to an FL process."""
    return {RUN_ENV: run_json}


def take_run_json() -> str:
    """The run handed to this process (removed from the environment once read)."""
    text = os.environ.pop(RUN_ENV, None)
    if text is None:
        raise SystemExit(f"{RUN_ENV} is not set: FL processes are started by the control plane or an agent")
    return text


@dataclass(frozen=True)
class ServerRun:
    bind_address: str
    redis_address: str
    uuid: str
    model: str
    strategy: str
    n_clients: int
    training: TrainingConfig
    # TLS for FL traffic (jobs with agent-run clients on a control plane with a certificate): PEM file paths.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The model's sizes (decided from the clients' data before launch) and its own settings.
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    # Where the global model is saved after each round ("" = not saved).
    model_dir: str = ""
    # The run's own Redis user (metrics/redis_users.py); empty for a Redis without authentication.
    redis_username: str = ""
    redis_password: str = ""
    # Job.resources.cpus: torch threads (0 = one, as every FL process has by default).
    cpus: int = 0

    def to_json(self) -> str:
        return _to_json(self)

    @classmethod
    def from_json(cls, text: str) -> ServerRun:
        return cls(**_fields_of(text))


@dataclass(frozen=True)
class ClientRun:
    server_address: str
    redis_address: str
    uuid: str
    model: str
    optimizer: str
    client_type: str
    data_path: str
    training: TrainingConfig
    # "auto" (first CUDA device if any, else cpu), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # PEM file of the CA to verify a TLS FL server with; empty = plaintext.
    root_certificates_file: str = ""
    # The name the TLS FL server's certificate is checked for, when `server_address` is not its own (the
    # agent's tunnel on loopback); empty = the host of `server_address`.
    tls_server_name: str = ""
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    label_column: str = ""
    redis_username: str = ""
    redis_password: str = ""
    cpus: int = 0  # as ServerRun.cpus
    # Under a scheduler: the FL server writes its host here once bound (fl/readiness.py); wait for it at most
    # this long, then connect to that host at server_address's port. '' = connect to server_address as it is.
    server_host_file: str = ""
    server_host_wait_seconds: float = 0.0

    def to_json(self) -> str:
        return _to_json(self)

    @classmethod
    def from_json(cls, text: str) -> ClientRun:
        return cls(**_fields_of(text))


def _to_json(run: ServerRun | ClientRun) -> str:
    # The training settings travel as a complete server_config, the form an agent's LaunchClient carries too.
    return json.dumps({**asdict(run), "training": run.training.to_server_config()})


def _fields_of(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(text)
    fields["training"] = TrainingConfig.from_server_config(fields["training"])
    return fields
