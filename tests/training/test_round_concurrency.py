"""A round asks all its clients at once: Flower's thread pool is sized for them, not for this machine's CPUs.

With Flower's default (min(32, cpus + 4) workers, each waiting for its client's answer), a round with more clients
than workers ran in waves: a round of clients that each train for a minute at their own site took a minute per
wave. Here every client's fit waits until all of them are fitting at once, which only a round that asks them all
at once can satisfy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest
from flwr.client import NumPyClient

from florist_grpc.fl import flower_api
from florist_grpc.net import free_service_port, split_host_port
from tests.helpers import wait_for

# One more client than Flower's default pool has workers on this machine.
CLIENTS = min(32, (os.cpu_count() or 1) + 4) + 1

SERVER = """
import sys
import flwr
from florist_grpc.fl import flower_api
clients = int(sys.argv[2])
strategy = flwr.server.strategy.FedAvg(
    fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=clients, min_evaluate_clients=clients,
    min_available_clients=clients, accept_failures=False,
)
history = flower_api.start_server(sys.argv[1], strategy, num_rounds=1, round_timeout=60, client_wait=60,
                                  clients=clients)
print("rounds", len(history.losses_distributed), flush=True)
"""


class Gathering(NumPyClient):  # type: ignore[misc]
    def __init__(self, everyone: threading.Barrier, seen: list[str]) -> None:
        self._everyone = everyone
        self._seen = seen

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(2)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        try:
            self._everyone.wait()  # every client of the round is fitting at the same time
            self._seen.append("together")
        except threading.BrokenBarrierError:
            self._seen.append("alone")
            raise
        return parameters, 1, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        return 0.0, 1, {}


def accepts(address: str) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(split_host_port(address)) == 0


@pytest.mark.slow
def test_every_client_of_a_round_fits_at_the_same_time() -> None:
    address = f"127.0.0.1:{free_service_port()}"  # bound once the server has imported Flower
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, address, str(CLIENTS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    everyone = threading.Barrier(CLIENTS, timeout=15)
    seen: list[str] = []
    clients = [
        threading.Thread(target=flower_api.start_client, args=(address, Gathering(everyone, seen)), daemon=True)
        for _ in range(CLIENTS)
    ]
    try:
        # As the control plane does with forked clients, they join once the server accepts connections: this
        # test is about the round, not about dialling again (tests/training/test_client_dials_again.py).
        wait_for(lambda: accepts(address) or server.poll() is not None, 120, "the FL server to listen")
        for client in clients:
            client.start()
        out, err = server.communicate(timeout=120)
    finally:
        server.kill()
    for client in clients:
        client.join(30)
    assert seen == ["together"] * CLIENTS, err[-2000:]
    assert server.returncode == 0 and "rounds 1" in out, err[-2000:]
