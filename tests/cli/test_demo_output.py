"""`florist-grpc demo` ends with its own summary: no log line of the control plane's shutdown glued after it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@pytest.mark.slow
def test_the_demo_summary_comes_last_and_apart_from_the_log(tmp_path: Path) -> None:
    # Both streams into one pipe, unbuffered: the order a terminal shows them in.
    done = subprocess.run(
        [sys.executable, "-m", "florist_grpc", "demo", "--data-dir", str(tmp_path / "demo"), "--rounds", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    assert not [line for line in lines if LOG_LINE.search(line) and not LOG_LINE.match(line)], "a log line glued"
    header = lines.index("round  val loss  val accuracy  train loss")
    assert lines[header - 1] == ""
    summary = lines[header:]
    assert not [line for line in summary if LOG_LINE.match(line)], summary
    assert summary[3].startswith("final state: JOB_STATE_FINISHED_SUCCESSFULLY in ")
    assert summary[-1].endswith("--out model.safetensors")
