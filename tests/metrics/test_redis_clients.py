"""The control plane's Redis clients fail within their own timeout (florist_grpc/redis_clients.py).

A client built with redis-py's defaults (`redis.Redis(host=..., port=...)`, as the embedded Redis's admin client
was) retries each call up to 10 times with backoff: a 1 s probe of a Redis that does not answer takes 15 s, of one
that is down 4.1 s, and a restart whose embedded Redis had died spent 7.6-12 s probing it. These tests bound each
case well below those figures and well above the timeouts themselves, for every kind of client we build.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis

from florist_grpc import redis_clients
from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import Unavailable
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import free_service_port
from florist_grpc.testing.plane import wait_for

TIMEOUT = 0.5


@pytest.fixture
def mute_redis() -> Iterator[str]:
    """A Redis URL whose listener accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """What `call` raised (None if nothing) and how long it took."""
    began = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - began
    return None, time.monotonic() - began


def test_a_call_to_a_redis_that_does_not_answer_fails_after_its_timeout_once(mute_redis: str) -> None:
    client = redis_clients.client(mute_redis, TIMEOUT, TIMEOUT)
    error, took = timed(client.ping)
    assert isinstance(error, redis.TimeoutError)
    assert took < 3 * TIMEOUT, f"{took:.1f}s: retried"


def test_a_call_to_a_redis_that_is_down_fails_at_once() -> None:
    client = redis_clients.client(f"redis://127.0.0.1:{free_service_port()}/0", TIMEOUT, TIMEOUT)
    error, took = timed(client.ping)
    assert isinstance(error, redis.ConnectionError)
    assert took < TIMEOUT, f"{took:.1f}s: retried"


def test_an_event_loops_client_fails_after_its_timeout_once(mute_redis: str) -> None:
    async def ping() -> tuple[BaseException | None, float]:
        client = redis_clients.async_client(mute_redis, TIMEOUT)
        began = time.monotonic()
        try:
            await client.ping()
        except redis.RedisError as exc:
            return exc, time.monotonic() - began
        finally:
            await client.aclose()
        return None, time.monotonic() - began

    error, took = asyncio.run(ping())
    assert isinstance(error, redis.TimeoutError)
    assert took < 3 * TIMEOUT, f"{took:.1f}s: retried"


def test_a_connection_redis_closed_while_idle_is_reopened_for_the_next_call(redis_url: str) -> None:
    client = redis_clients.client(redis_url, TIMEOUT, TIMEOUT)
    assert client.set("k", "v")
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert client.get("k") == b"v"  # no retry needed: the pool checks a connection before lending it
    admin.close()
    client.close()


def test_a_start_on_a_hung_redis_is_refused_within_the_probe_timeout(mute_redis: str) -> None:
    users = RunUsers(mute_redis, 3600)
    error, took = timed(users.check)
    assert isinstance(error, Unavailable), error
    assert took < 3.0, f"{took:.1f}s"  # a 1 s probe
    users.close()


def test_a_restart_whose_embedded_redis_died_starts_a_new_one_without_waiting_on_the_dead_one(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path, Timeouts())
    first.start()
    dead = psutil.Process(json.loads((first.dir / "redis.json").read_text())["pid"])
    dead.kill()  # not reaped (first's Popen keeps it), as in a process that embeds the control plane
    wait_for(lambda: dead.status() == psutil.STATUS_ZOMBIE, 10, "the killed Redis to be a zombie")
    second = EmbeddedRedis(tmp_path, Timeouts())
    error, took = timed(second.start)
    assert error is None, error
    assert took < 5.0, f"{took:.1f}s"  # 7.6-12 s of probes of the dead one before
    pid = json.loads((second.dir / "redis.json").read_text())["pid"]
    assert pid != dead.pid and second.running()
    second.stop()
