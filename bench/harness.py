"""Running the pieces of a benchmark: load processes and their JSON results (the embedded control plane is
florist_grpc/testing/plane.py's `embedded_plane`; a benchmark that launches no FL process asks it for no launcher
pool, whose warm-up would otherwise take a core during the first seconds measured)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


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
