"""How a long-running command's start fails: one line naming the step (and its flag) that failed.

`serve` and `agent` start several things in turn (a lock, ports, Redis, a launcher pool, a store); a bare
`[Errno 98] Address already in use` does not say which of them failed. Each step runs inside `step(...)`, so the
error reads `--metrics-port 9100: [Errno 98] Address already in use`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class StartFailed(RuntimeError):
    """A start failed: the message names the step (and its flag) and the cause."""


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Turn any error of the step `what` into StartFailed saying `what: cause`."""
    try:
        yield
    except StartFailed:
        raise
    except Exception as exc:
        raise StartFailed(f"{what}: {exc}") from exc
