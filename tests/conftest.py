from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.metrics.embedded_redis import redis_server_binary
from florist_grpc.net import free_service_port
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import wait_for

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
# A run started in the background by a shell without job control (`make test &` in a script) has SIGINT ignored,
# which every command the tests start would inherit: the Ctrl-C tests need it delivered, as a terminal would.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The demo's learnable synthetic set for 2 clients."""
    return [str(p) for p in write_synthetic(tmp_path_factory.mktemp("data"), 2)]


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    running = ControlPlaneThread.in_dir(tmp_path / "florist")
    yield running
    running.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port."""
    port = free_service_port()
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_for(answers, 10, "redis-server to answer")
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    process.send_signal(signal.SIGTERM)
    process.wait(10)
