"""Probe local data files in a subprocess (`python -m florist_grpc.fl.probe`): torch stays out of this process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from florist_grpc.launch.process import fl_environment


class ProbeFailed(Exception):
    """The probe itself could not run (not a problem of a data file: those are in the summaries)."""


def probe_files(files: list[tuple[str, str]], timeout: float) -> list[dict[str, Any]]:
    """One summary per (path, label_column), in order (see florist_grpc/fl/probe.py for its fields)."""
    if not files:
        return []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "florist_grpc.fl.probe", json.dumps(files)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=fl_environment(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeFailed(f"reading the clients' data took longer than {timeout:g}s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ProbeFailed(f"the data probe exited with code {done.returncode}: {tail}")
    try:
        summaries: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise ProbeFailed(f"the data probe printed no summary ({exc})") from exc
    if len(summaries) != len(files):
        raise ProbeFailed(f"the data probe summarised {len(summaries)} of {len(files)} files")
    return summaries
