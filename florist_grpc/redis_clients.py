"""Redis clients of the control plane and the agent: a call fails within its own timeout, never retried by redis-py.

In redis-py 8.2 (the lock's), a client built as `redis.Redis(host=..., port=...)` gets 10 retries with backoff, and
one built with `from_url` none. The embedded Redis's admin client, and the one that upgrades a Redis an older
version left, were built the first way: adopting a Redis that accepts connections but does not answer took 45 s
(three probes with a 1 s timeout, each retried), where it now takes 3 s (bench/redis_failures.py). Every client is
now built here, or with `no_retries()` where it is not built from a URL, so the policy is explicit whatever the way
a client is built or redis-py's defaults; a URL's own `retry_on_timeout` is not honoured. Each caller already has
its own policy for a failure (the listener reconnects with backoff, the reader reads the source again after its
retry interval, the health watch probes again on its interval, the supervisor restarts Redis), and redis-py's
retries would only hide a failure for longer. A connection Redis closed while idle is not a failure: the pool checks
a connection before lending it and reconnects (tests/metrics/test_redis_clients.py).
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


def client(url: str, timeout: float, **options: Any) -> redis.Redis:
    """A client of the Redis at `url` whose connects and calls fail after `timeout` (a pub/sub read that passes
    its own timeout waits that long instead)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=no_retries(), **options
    )


def async_client(url: str, timeout: float) -> redis.asyncio.Redis:
    """`client` for an event loop."""
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=AsyncRetry(NoBackoff(), 0)
    )
