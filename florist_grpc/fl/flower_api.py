"""The one module that calls Flower's deprecated-but-supported start_server/start_client (flwr 1.42).

Moving to SuperLink/SuperNode is a change to this file only.
"""

from __future__ import annotations

import logging
import time
import timeit
import warnings
from collections.abc import Callable
from typing import Any

import flwr
import grpc
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion
from flwr.server.history import History

# The names an FL process logs under (fl/process.py): this module runs in both kinds.
server_log = logging.getLogger("florist.fl.server")
client_log = logging.getLogger("florist.fl.client")

# The client gives up instead of retrying forever when the server is gone (FLorist's clients could hang).
CLIENT_MAX_RETRIES = 5
CLIENT_MAX_WAIT_SECONDS = 30.0
# A client refused by a server not listening yet dials again after this long, doubling up to the cap.
DIAL_BACKOFF_SECONDS = (0.05, 1.0)


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


class StopRun(Exception):
    """Raised by a strategy (from `aggregate_evaluate`) to end the run after the current round.

    Flower's round loop has no way to stop early; ending it with this exception keeps Flower's own shutdown:
    the clients are told to disconnect, as after the last round, so they end cleanly instead of failing when
    the server goes away.
    """


class _ReadyServer(flwr.server.Server):
    """Flower calls `fit` right after its gRPC server has bound and started: the moment to say "ready".

    A `StopRun` from the strategy ends the round loop early; the History returned then is empty (the strategy
    knows why and where it stopped)."""

    def __init__(
        self, client_manager: SimpleClientManager, strategy: Any, on_ready: Callable[[], None], clients: int
    ) -> None:
        super().__init__(client_manager=client_manager, strategy=strategy)
        self._on_ready = on_ready
        # Flower hands a round's instructions to a thread pool that is otherwise sized by this machine's CPUs
        # (min(32, cpus + 4)), and each worker waits for its client's answer: with more clients than workers a
        # round ran in waves, each as long as its slowest client. One worker per client: every client trains at
        # once, as an FL round means.
        self.set_max_workers(max(1, clients))

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        self._on_ready()
        started = timeit.default_timer()
        try:
            return super().fit(num_rounds, timeout)
        except StopRun as stop:
            server_log.warning(
                "ending the run early: %s (Flower's summary below still says %d rounds)", stop, num_rounds
            )
            return History(), timeit.default_timer() - started


def start_server(
    bind_address: str,
    strategy: Any,
    num_rounds: int,
    round_timeout: float,
    client_wait: float,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    on_ready: Callable[[], None] = lambda: None,
    clients: int = 1,
) -> Any:
    """Run every round (blocks); with `certificates` (CA, certificate chain, private key; PEM) over TLS.
    `on_ready` is called once the server accepts connections; `clients` of each round are asked at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return flwr.server.start_server(
            server_address=bind_address,
            config=flwr.server.ServerConfig(num_rounds=num_rounds, round_timeout=round_timeout),
            server=_ReadyServer(BoundedClientManager(client_wait), strategy, on_ready, clients),
            certificates=certificates,
        )


def start_client(
    server_address: str,
    client: flwr.client.NumPyClient,
    root_certificates: bytes | None = None,
    tls_server_name: str = "",
    connect_seconds: float = 0.0,
) -> None:
    """Join the FL server; with `root_certificates` (PEM) over TLS, verifying the server against them (and its
    certificate for `tls_server_name` when given: the address is then the agent's tunnel on loopback).

    A server that is not listening yet is dialled again, with backoff, for up to `connect_seconds`. A spawned
    client starts beside its spawned server (both import torch for seconds) and can dial first, and Flower's
    legacy transport does not retry: the client failed at its first message, "failed to connect".
    """
    if root_certificates is not None and tls_server_name:
        _verify_server_name(tls_server_name)
    deadline = time.monotonic() + connect_seconds
    delay, cap = DIAL_BACKOFF_SECONDS
    while True:
        try:
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
            return
        except grpc.RpcError as exc:
            if not _refused(exc) or time.monotonic() + delay > deadline:
                raise
        client_log.info("the FL server at %s is not listening yet; dialling again in %.2fs", server_address, delay)
        time.sleep(delay)  # nothing tells a client when a port starts listening
        delay = min(delay * 2, cap)


def _refused(exc: grpc.RpcError) -> bool:
    """The stream never started because nothing listens at the address: no instruction can have been received,
    so joining again starts nothing twice. (A TLS or name failure is not this, and is not retried.)"""
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    details = exc.details() or ""
    return "failed to connect to all addresses" in details and "Connection refused" in details


def _verify_server_name(name: str) -> None:
    """Make Flower's client channel check the FL server's certificate for `name` rather than for the host it
    dials (Flower's start_client takes no channel options). The client process runs this one client only."""
    from flwr.compat.client.grpc_client import connection
    from flwr.supercore.grpc import GRPC_MAX_MESSAGE_LENGTH

    def create_channel(
        server_address: str,
        insecure: bool,
        root_certificates: bytes | None = None,
        max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
        interceptors: Any = None,
    ) -> grpc.Channel:
        options = [
            ("grpc.max_send_message_length", max_message_length),
            ("grpc.max_receive_message_length", max_message_length),
            ("grpc.ssl_target_name_override", name),
        ]
        channel = grpc.secure_channel(server_address, grpc.ssl_channel_credentials(root_certificates), options)
        return grpc.intercept_channel(channel, *interceptors) if interceptors else channel

    connection.create_channel = create_channel  # type: ignore[attr-defined]
