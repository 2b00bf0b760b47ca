"""Local FL processes: each in its own session (its own process group), logging to a file.

A process is identified by (pid, create_time), never by a bare pid: signals go to its process group only after
checking that the pid still belongs to the process we started, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from florist_grpc.domain.model import ProcessRef
from florist_grpc.fl.readiness import READY_FD_ENV


def fl_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    env.update(
        {
            "FLWR_TELEMETRY_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            # Flower would otherwise print colour codes into the log files.
            "FLWR_LOG_COLORS": "0",
        }
    )
    return env


def spawn(
    module: str,
    args: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    ready_fd: int | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRef]:
    """Start `python -m module args...` in a new session with stdout and stderr appended to log_path.

    `env` adds to the environment: secrets go there, never into `args` (any local user can read argv).
    `ready_fd`: the write end of a readiness pipe, handed to the process (fl/readiness.py).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = fl_environment(env)
    if ready_fd is not None:
        environment[READY_FD_ENV] = str(ready_fd)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            pass_fds=() if ready_fd is None else (ready_fd,),
            # Own session: survives a crash of the control plane, and killpg reaches the whole tree.
            start_new_session=True,
        )
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = 0.0  # already gone: the supervisor will see its exit code
    return popen, ProcessRef(pid=popen.pid, create_time=create_time, log_path=str(log_path))


def find(ref: ProcessRef) -> psutil.Process | None:
    """The live process `ref` names, or None if it exited (or its pid now belongs to another process)."""
    if ref.pid <= 0:
        return None
    try:
        process = psutil.Process(ref.pid)
        if ref.create_time and abs(process.create_time() - ref.create_time) > 0.01:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def signal_group(ref: ProcessRef, sig: int) -> None:
    process = find(ref)
    if process is None:
        return
    try:
        os.killpg(process.pid, sig)  # the process leads its own group (start_new_session)
    except ProcessLookupError:
        # No such group yet: forked a moment ago, it has not called setsid (nor started anything of its own).
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)
    except PermissionError:
        process.send_signal(sig)


def terminate(refs: Sequence[ProcessRef], grace: float, popens: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    """SIGTERM every process group, SIGKILL whatever is left after `grace` seconds; reap our own children."""
    live = [(ref, p) for ref in refs if (p := find(ref)) is not None]
    # Descendants that left the group (setsid) are still ours to end: remember them before the leader dies.
    descendants = [child for _, p in live for child in _children(p)]
    for ref, _ in live:
        signal_group(ref, signal.SIGTERM)
    _, alive = psutil.wait_procs([p for _, p in live], timeout=grace)
    for process in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    for popen in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(0.5, grace))


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return list(process.children(recursive=True))
    except psutil.Error:
        return []


def log_tail(path: str, lines: int = 15, max_bytes: int = 16_384) -> str:
    """The last lines of a log file (empty if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
