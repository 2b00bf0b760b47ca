"""Under `--log-format json`, whatever reaches file descriptor 2 without going through `logging` becomes JSON too.

grpc's C core logs with absl straight to fd 2 (`E1205 22:11:48.266218 1958 add_port.cc:83] Failed to add port
...`, TLS handshake failures), and so would a child process that inherits it or a stray `print(file=sys.stderr)`.
A collector that expects one JSON object per line chokes on those. So fd 2 becomes a pipe, and a thread turns each
line read from it into a log record of logger `florist_grpc.stderr`, written as JSON to the real stderr (a copy of
the original fd 2, which only the logging handler writes to).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import threading
from typing import TextIO

# absl's prefix (`E1205 22:11:48.266218 1958 file.cc:83] ...`) and our own `error: ...` lines carry their level.
_ABSL = re.compile(r"^([IWEF])\d{4} ")
_ABSL_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
log = logging.getLogger("florist_grpc.stderr")


def level_of(line: str) -> int:
    """The level a stray stderr line says it has (WARNING when it says nothing: stray output is unexpected)."""
    if match := _ABSL.match(line):
        return _ABSL_LEVELS[match.group(1)]
    if line.startswith("error:"):
        return logging.ERROR
    return logging.WARNING


class StrayStderr:
    """fd 2 redirected into a pipe whose lines are logged; `real` is where the original stderr now is."""

    def __init__(self) -> None:
        self._saved = os.dup(2)
        self.real: TextIO = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        self._read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="stray-stderr", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _pump(self) -> None:
        pending = b""
        while True:
            # Poll, not a blocking read: a child that inherited fd 2 keeps the pipe open after we are done with it.
            readable, _, _ = select.select([self._read], [], [], 0.1)
            chunk = os.read(self._read, 65536) if readable else b""
            if readable and not chunk:  # every writer closed
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._log(line)
            if self._stopping.is_set() and not readable:
                break
        if pending:
            self._log(pending)

    @staticmethod
    def _log(raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line.strip():
            log.log(level_of(line), "%s", line)

    def close(self) -> None:
        """Give fd 2 back and log what is still in the pipe (at exit, so that a last error line is not lost)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.dup2(self._saved, 2)
        self._thread.join(2)
        os.close(self._saved)
