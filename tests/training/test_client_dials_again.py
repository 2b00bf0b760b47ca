"""A client that dials before its FL server listens dials again (a spawned client starts beside its spawned
server), for a bounded time; anything else that fails its connection is not retried."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import grpc
import pytest

from florist_grpc.fl import flower_api
from florist_grpc.net import free_port, free_service_port
from tests.helpers import wait_for
from tests.training.test_round_concurrency import SERVER, Gathering


@pytest.mark.slow
def test_a_client_started_before_its_server_joins_it_once_it_listens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="florist.fl.client")
    address = f"127.0.0.1:{free_service_port()}"  # bound once the server has started, later
    seen: list[str] = []
    failures: list[BaseException] = []

    def join() -> None:
        try:
            flower_api.start_client(address, Gathering(threading.Barrier(1), seen), connect_seconds=60)
        except BaseException as exc:  # reported below: a thread's exception would be lost
            failures.append(exc)

    client = threading.Thread(target=join, daemon=True)
    client.start()
    wait_for(lambda: "not listening yet" in caplog.text or failures, 30, "the client to be refused once")
    assert not failures
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, address, "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = server.communicate(timeout=120)
    finally:
        server.kill()
    client.join(30)
    assert not failures and seen == ["together"], err[-2000:]
    assert server.returncode == 0 and "rounds 1" in out, err[-2000:]


def test_a_server_that_never_listens_fails_the_client_once_its_time_is_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="florist.fl.client")
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        # 3 s: a refused dial through Flower takes 0.2-0.4 s here, and the backoff 0.05 s doubling, so 1 s could
        # hold a single dial again (1 run in 6 failed so).
        flower_api.start_client(f"127.0.0.1:{free_port()}", Gathering(threading.Barrier(1), []), connect_seconds=3.0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert time.monotonic() - began < 3.0 + 10  # its time, and one last dial's
    assert caplog.text.count("not listening yet") >= 2  # it dialled again until then
