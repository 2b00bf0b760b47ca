"""The control plane's Redis clients fail within their own timeout (florist_grpc/redis_clients.py).

In redis-py 8.2 a client built as `redis.Redis(host=..., port=...)`, as the embedded Redis's admin client was,
retries each call up to 10 times with backoff: adopting a Redis that accepts connections but never answers took
45 s. Clients built from a URL were never retried; the policy is now explicit for every client we build.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from florist_grpc import redis_clients
from florist_grpc.config import Timeouts
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.listener import ReportListener
from florist_grpc.testing.plane import wait_for

TIMEOUT = 0.5


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port whose listener accepts connections and never answers (a hung Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def test_no_client_we_build_retries_even_when_its_url_asks_to() -> None:
    url = "redis://127.0.0.1:6379/0?retry_on_timeout=true"
    sync = redis_clients.client(url, TIMEOUT).connection_pool.make_connection()
    loop = redis_clients.async_client(url, TIMEOUT).connection_pool.make_connection()
    assert sync.retry.get_retries() == 0 and loop.retry.get_retries() == 0
    assert redis_clients.no_retries().get_retries() == 0


def test_a_call_to_a_redis_that_does_not_answer_fails_after_its_timeout(mute_port: int) -> None:
    client = redis_clients.client(f"redis://127.0.0.1:{mute_port}/0", TIMEOUT)
    began = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - began < 3 * TIMEOUT


def test_the_listener_on_a_redis_that_stops_answering_never_hangs_its_thread(mute_port: int) -> None:
    """Its PING and subscribe are bounded (5 s): a stop ends the thread even while Redis does not answer."""
    listener = ReportListener(f"redis://127.0.0.1:{mute_port}/0", lambda uuid: None)
    listener.start()
    listener.follow(["a" * 32])
    listener.stop()  # joins for up to 5 s, then leaves a thread that still blocks
    wait_for(lambda: not listener._thread.is_alive(), 10, "the listener's thread to end")


def test_a_connection_redis_closed_while_idle_is_reopened_for_the_next_call(redis_url: str) -> None:
    client = redis_clients.client(redis_url, TIMEOUT)
    assert client.set("k", "v")
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert client.get("k") == b"v"  # no retry needed: the pool checks a connection before lending it
    admin.close()
    client.close()


def test_a_start_that_finds_a_hung_redis_under_its_recorded_pid_starts_a_new_one_within_seconds(
    tmp_path: Path, mute_port: int
) -> None:
    """A live process under the recorded pid, but nothing answers on the port: three 1 s probes, then a new Redis
    (45 s when the admin client retried)."""
    holder = subprocess.Popen(["sleep", "120"])  # the live pid the state file names
    try:
        embedded = EmbeddedRedis(tmp_path, Timeouts())
        embedded.dir.mkdir(parents=True, exist_ok=True)
        state = {"port": mute_port, "pid": holder.pid, "create_time": psutil.Process(holder.pid).create_time()}
        (embedded.dir / "redis.json").write_text(json.dumps(state))
        began = time.monotonic()
        embedded.start()
        took = time.monotonic() - began
        try:
            assert took < 10.0, f"{took:.1f}s"
            assert embedded.port != mute_port and embedded.running()
        finally:
            embedded.stop()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_restart_whose_embedded_redis_died_starts_a_new_one_without_probing_the_dead_one(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path, Timeouts())
    first.start()
    dead = psutil.Process(json.loads((first.dir / "redis.json").read_text())["pid"])
    dead.kill()  # not reaped (first's Popen keeps it), as in a process that embeds the control plane
    second = EmbeddedRedis(tmp_path, Timeouts())
    try:
        wait_for(lambda: dead.status() == psutil.STATUS_ZOMBIE, 10, "the killed Redis to be a zombie")
        began = time.monotonic()
        second.start()
        took = time.monotonic() - began
        assert took < 5.0, f"{took:.1f}s"  # 7.6-12 s of probes of the dead one before
        assert json.loads((second.dir / "redis.json").read_text())["pid"] != dead.pid and second.running()
    finally:
        second.stop()
        first.stop()  # reaps the zombie
