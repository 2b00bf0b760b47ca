"""One process per data directory: an exclusive lock file in it, with the holder's pid written in it.

`serve` locks its --data-dir (serve.lock): two control planes on one data dir would adopt the same embedded Redis
(and the second would stop it under the first), and both would re-attach the same jobs and append duplicate
events. `agent` locks its --data-root (agent.lock in its state directory) for the same reason: a second agent
would adopt the first one's Redis and clients, and stop that Redis when it exits. flock is released by the kernel
when the holder dies, however it dies, so a crashed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirInUse(RuntimeError):
    """Another process holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path, command: str = "serve", described_as: str = "") -> None:
        """Lock `data_dir` for the florist-grpc `command` (the lock file is `<command>.lock` in it); errors name
        the directory as `described_as` (default `data dir <data_dir>`)."""
        self.path = data_dir / f"{command}.lock"
        self._command = command
        self._described_as = described_as or f"data dir {data_dir}"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirInUse naming the holder's pid."""
        # os.open gives a non-inheritable descriptor: FL processes and redis-server never hold the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"{self._described_as} is in use by another florist-grpc {self._command} (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock
