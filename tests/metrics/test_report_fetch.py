"""Reading reports' text within the size bound (metrics/report_fetch.py), on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from florist_grpc.metrics.report_fetch import ReportFetch
from florist_grpc.store.base import SetAside

BOUND = 100


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_report_of_the_bound_is_read_and_one_byte_more_is_set_aside(client: redis.Redis) -> None:
    client.set("fits", b"x" * BOUND)
    client.set("over", b"y" * (BOUND + 1))
    client.set("empty", b"")
    client.rpush("not-a-string", b"z")
    fetched = ReportFetch(client, BOUND).read(["fits", "over", "absent", "empty", "not-a-string"])
    assert fetched[0] == b"x" * BOUND
    assert isinstance(fetched[1], SetAside) and f"({BOUND + 1} bytes)" in fetched[1].reason
    assert fetched[2:] == [None, None, None]


def test_a_source_set_aside_is_read_again_once_its_report_fits(client: redis.Redis) -> None:
    fetch = ReportFetch(client, BOUND)
    client.set("s", b"y" * (BOUND * 10))
    assert isinstance(fetch.read(["s"])[0], SetAside)
    assert isinstance(fetch.read(["s"])[0], SetAside)  # still over: its length told it
    client.set("s", b"{}")
    assert fetch.read(["s"]) == [b"{}"]
    client.set("s", b"y" * (BOUND + 1))
    assert isinstance(fetch.read(["s"])[0], SetAside)


def test_a_batch_larger_than_one_write_is_read_whole(client: redis.Redis) -> None:
    keys = [f"k{i}" for i in range(2500)]  # three writes of at most 1,000 commands
    client.mset({k: k.encode() for k in keys[::2]})
    fetched = ReportFetch(client, BOUND).read(keys)
    assert fetched == [k.encode() if i % 2 == 0 else None for i, k in enumerate(keys)]
