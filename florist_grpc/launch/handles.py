"""A handle on one FL process, wherever it runs: the follower treats local and agent-run processes alike."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Protocol

from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.fl.run_config import run_environment
from florist_grpc.launch import process


class ProcessHandle(Protocol):
    ref: ProcessRef

    def poll(self) -> Exit | None:
        """None while running."""

    def terminate(self) -> None:
        """Ask the process tree to stop (SIGTERM); returns at once."""

    def kill(self) -> None:
        """End the process tree now (SIGKILL)."""

    def log_tail(self) -> str:
        """The last lines of its log."""


class LocalProcess:
    """A process on this machine: our child (exit code known) or adopted after a restart (psutil only)."""

    def __init__(self, ref: ProcessRef, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.ref = ref
        self._popen = popen

    def poll(self) -> Exit | None:
        if self._popen is not None:
            code = self._popen.poll()
            return None if code is None else Exit(code)
        return None if process.find(self.ref) is not None else Exit(None)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            process.signal_group(self.ref, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def log_tail(self) -> str:
        return process.log_tail(self.ref.log_path)


FL_MODULES = {"server": "florist_grpc.fl.server", "client": "florist_grpc.fl.client"}


def start_local(role: str, run_json: str, log_path: Path) -> LocalProcess:
    """Launch an FL `role` ("server" or "client") on this machine for the run described by `run_json`.

    The one seam through which every local FL process starts (control plane and agents alike).
    """
    popen, ref = process.spawn(FL_MODULES[role], [], log_path, run_environment(run_json))
    return LocalProcess(ref, popen)
