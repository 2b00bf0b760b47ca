"""Telling the control plane that this FL process is ready, by event instead of being polled.

Whoever launched the process (the launcher pool or a plain spawn) passes the write end of a pipe in
FLORIST_READY_FD; writing to it once is the signal, and the pipe closing without it means "ended before ready".
"""

from __future__ import annotations

import contextlib
import os

READY_FD_ENV = "FLORIST_READY_FD"


def signal_ready() -> None:
    """Say "ready" once; a no-op when nobody listens (the process was started by hand)."""
    value = os.environ.pop(READY_FD_ENV, "")
    if not value.isdigit():
        return
    fd = int(value)
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)
