"""Probe local data files in another process (`python -m florist_grpc.fl.probe`): torch stays out of this one.

Forked from the launcher pool when there is one (torch and numpy already imported: a probe then costs
milliseconds, not the 1.5-2 s of a fresh interpreter's imports, which StartTraining would otherwise wait for),
spawned otherwise.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from florist_grpc.domain.model import Exit
from florist_grpc.launch import process
from florist_grpc.launch.pool import LauncherPool, PoolUnavailable
from florist_grpc.launch.process import fl_environment

log = logging.getLogger(__name__)
PROBE_MODULE = "florist_grpc.fl.probe"


class ProbeFailed(Exception):
    """The probe itself could not run (not a problem of a data file: those are in the summaries)."""


def probe_files(files: list[tuple[str, str]], timeout: float, pool: LauncherPool | None = None) -> list[dict[str, Any]]:
    """One summary per (path, label_column), in order (see florist_grpc/fl/probe.py for its fields)."""
    if not files:
        return []
    argument = json.dumps(files)
    if pool is not None:
        try:
            code, output = _forked(pool, argument, timeout)
            return _summaries(files, code, output, output)
        except PoolUnavailable as exc:
            log.warning("probing the data by spawning a process: %s", exc)
    try:
        done = subprocess.run(
            [sys.executable, "-m", PROBE_MODULE, argument],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=fl_environment(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeFailed(_too_long(timeout)) from exc
    return _summaries(files, done.returncode, done.stdout, done.stderr)


def _forked(pool: LauncherPool, argument: str, timeout: float) -> tuple[int, str]:
    """Run the probe as a child of the pool; its stdout and stderr share one log file, the summary last."""
    with tempfile.TemporaryDirectory(prefix="florist-probe-") as directory:
        log_path = Path(directory) / "probe.log"
        child = pool.launch(PROBE_MODULE, [argument], log_path)
        ended = child.wait_exit(timeout)
        if ended is None:  # too slow, or the pool died and will never say: either way, it is over
            process.signal_group(child.ref, signal.SIGKILL)
            raise ProbeFailed(_too_long(timeout))
        return (-1 if ended.code is None else ended.code), log_path.read_text(errors="replace")


def _too_long(timeout: float) -> str:
    return f"reading the clients' data took longer than {timeout:g}s"


def _summaries(files: list[tuple[str, str]], code: int, stdout: str, stderr: str) -> list[dict[str, Any]]:
    if code != 0:
        # Its stderr may quote a data file (a reader's traceback): the control plane's log keeps it, at DEBUG;
        # the caller learns what happened, in words of ours.
        log.debug("the data probe exited with code %d; its last lines:\n%s", code, "\n".join(stderr.splitlines()[-5:]))
        raise ProbeFailed(
            f"the data probe {Exit(code).describe()} (its last lines are in the control plane's log, at DEBUG)"
        )
    try:
        summaries: list[dict[str, Any]] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise ProbeFailed(f"the data probe printed no summary ({exc})") from exc
    if len(summaries) != len(files):
        raise ProbeFailed(f"the data probe summarised {len(summaries)} of {len(files)} files")
    return summaries
