"""The one module that calls Flower's deprecated-but-supported start_server/start_client (flwr 1.42).

Moving to SuperLink/SuperNode is a change to this file only.
"""

from __future__ import annotations

import warnings
from typing import Any

import flwr
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion

# The client gives up instead of retrying forever when the server is gone (FLorist's clients could hang).
CLIENT_MAX_RETRIES = 5
CLIENT_MAX_WAIT_SECONDS = 30.0


class BoundedClientManager(SimpleClientManager):
    """Flower waits up to a day for clients by default; this waits `wait_seconds`, then fails the run."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__()
        self._wait_seconds = wait_seconds

    def sample(
        self, num_clients: int, min_num_clients: int | None = None, criterion: Criterion | None = None
    ) -> list[ClientProxy]:
        needed = num_clients if min_num_clients is None else min_num_clients
        if not self.wait_for(needed, timeout=int(max(1, self._wait_seconds))):
            raise RuntimeError(
                f"only {self.num_available()} of {needed} FL clients connected within {self._wait_seconds:g}s"
            )
        clients: list[ClientProxy] = super().sample(num_clients, min_num_clients, criterion)
        return clients


def start_server(
    bind_address: str,
    strategy: Any,
    num_rounds: int,
    round_timeout: float,
    client_wait: float,
    certificates: tuple[bytes, bytes, bytes] | None = None,
) -> Any:
    """Serve the FL rounds; with `certificates` (CA, certificate chain, private key; PEM) over TLS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return flwr.server.start_server(
            server_address=bind_address,
            config=flwr.server.ServerConfig(num_rounds=num_rounds, round_timeout=round_timeout),
            strategy=strategy,
            client_manager=BoundedClientManager(client_wait),
            certificates=certificates,
        )


def start_client(server_address: str, client: flwr.client.NumPyClient, root_certificates: bytes | None = None) -> None:
    """Join the FL server; with `root_certificates` (PEM) over TLS, verifying the server against them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        flwr.client.start_client(
            server_address=server_address,
            client=client.to_client(),
            max_retries=CLIENT_MAX_RETRIES,
            max_wait_time=CLIENT_MAX_WAIT_SECONDS,
            root_certificates=root_certificates,
            insecure=root_certificates is None,
        )
