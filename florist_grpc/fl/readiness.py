"""Telling the control plane that this FL process is ready, by event instead of being polled.

Whoever launched the process (the launcher pool or a plain spawn) passes the write end of a pipe in
FLORIST_READY_FD; writing to it once is the signal, and the pipe closing without it means "ended before ready".
A process a cluster scheduler placed on another node (Slurm) has no pipe to us: FLORIST_READY_FILE names a file
in the shared dir it writes instead, holding the address its clients reach it at (its route to the control
plane's FLORIST_ADVERTISE_TO, since the node's own hostname may resolve to loopback).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

READY_FD_ENV = "FLORIST_READY_FD"
READY_FILE_ENV = "FLORIST_READY_FILE"
ADVERTISE_TO_ENV = "FLORIST_ADVERTISE_TO"


def route_address(target: str) -> str:
    """This host's address on its route to `target` (no packet is sent: a UDP connect picks the route)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((target or "127.0.0.1", 9))
        return str(probe.getsockname()[0])
    return "127.0.0.1"


def signal_ready() -> None:
    """Say "ready" once; a no-op when nobody listens (the process was started by hand)."""
    value = os.environ.pop(READY_FD_ENV, "")
    if value.isdigit():
        fd = int(value)
        with contextlib.suppress(OSError):
            os.write(fd, b"ready\n")
        with contextlib.suppress(OSError):
            os.close(fd)
    path = os.environ.pop(READY_FILE_ENV, "")
    if path:
        host = route_address(os.environ.pop(ADVERTISE_TO_ENV, ""))
        with contextlib.suppress(OSError):
            with open(path + ".tmp", "w") as f:
                f.write(host + "\n")
            os.replace(path + ".tmp", path)  # whole or absent: the control plane never reads half a line


# How often a client started before its server looks for the server's host file (no event crosses nodes).
HOST_FILE_POLL_SECONDS = 0.05


def await_server_address(host_file: str, server_address: str, timeout: float) -> str:
    """server_address with its host replaced by the one the FL server wrote to `host_file` once ready; waits up to
    `timeout` for the file (SystemExit saying so past it: the control plane fails the start anyway)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            host = Path(host_file).read_text().strip()
            if host:
                return f"{host}:{server_address.rsplit(':', 1)[1]}"
        if time.monotonic() > deadline:
            raise SystemExit(f"the FL server did not say where it runs ({host_file}) within {timeout:g}s")
        time.sleep(HOST_FILE_POLL_SECONDS)
