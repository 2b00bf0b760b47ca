"""Running the pieces of a benchmark: an embedded control plane, load processes, a scratch directory."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from florist_grpc.config import Settings, Timeouts
from florist_grpc.store.base import JobStore
from florist_grpc.testing.plane import ControlPlaneThread


@contextmanager
def embedded_plane(
    store: JobStore | None = None, launcher_pool: bool = True, timeouts: Timeouts | None = None
) -> Iterator[ControlPlaneThread]:
    with tempfile.TemporaryDirectory(prefix="florist-bench-") as directory:
        settings = Settings(
            port=0, data_dir=Path(directory) / "florist", launcher_pool=launcher_pool, timeouts=timeouts or Timeouts()
        )
        plane = ControlPlaneThread(settings, store)
        try:
            yield plane
        finally:
            plane.stop()


def load_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.load", *args], stdout=subprocess.PIPE, text=True)


def load_run(*args: str, timeout: float = 300) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.load", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def read_json_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    result: dict[str, Any] = json.loads(line)
    return result
