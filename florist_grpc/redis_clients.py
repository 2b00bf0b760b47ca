"""Redis clients of the control plane and the agent: a call fails within its own timeout, never retried by redis-py.

Since version 6, redis-py gives a client built as `redis.Redis(host=..., port=...)` 10 retries with backoff, and one
built with `from_url` none. The embedded Redis's admin client was built the first way: a restart whose embedded
Redis had died spent 7.6-12 s probing the dead one before starting a new one (bench/redis_failures.py), and a probe
with a 1 s timeout of a Redis that does not answer takes 15 s with those retries. Every client is now built here
(the embedded Redis's own with `no_retries()`), with retries off whatever the way it is built or redis-py's
defaults: each caller already has its own policy for a failure (the listener reconnects with backoff, the reader
reads the source again after its retry interval, the health watch probes again on its interval, the supervisor
restarts Redis), and redis-py's retries would only hide a failure for longer. A connection Redis closed while idle
is not a failure: the pool checks a connection before lending it and reconnects
(tests/metrics/test_redis_clients.py).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry


def no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


def client(url: str, timeout: float | None, connect_timeout: float, **options: Any) -> redis.Redis:
    """A client of the Redis at `url` whose calls fail after `timeout` (None: block, for pub/sub reads that wait
    with their own timeout) and whose connects fail after `connect_timeout`."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=no_retries(), **options
    )


def async_client(url: str, timeout: float) -> redis.asyncio.Redis:
    """`client` for an event loop."""
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=AsyncRetry(NoBackoff(), 0)
    )
