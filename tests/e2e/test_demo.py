"""`make demo` (`florist-grpc demo`): serve on the embedded defaults, train a real job, show it, point at the model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

CLI = [str(Path(sys.executable).with_name("florist-grpc"))]


@pytest.mark.slow
def test_the_demo_trains_to_success_and_names_a_model_file_that_exists(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    done = subprocess.run(
        [*CLI, "demo", "--data-dir", str(data_dir), "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "final state: JOB_STATE_FINISHED_SUCCESSFULLY" in out
    table = out.split("round  val loss  val accuracy  train loss\n", 1)[1].splitlines()[:2]
    assert [int(line.split()[0]) for line in table] == [1, 2]
    # The server is gone when the demo returns: the model is named by its file, which holds round 2's tensors.
    found = re.search(r"^the trained model: (\S+round-2\.safetensors)$", out, re.M)
    assert found, out
    with safe_open(found.group(1), "np") as tensors:
        assert len(list(tensors.keys())) > 0
    assert f"florist-grpc serve --data-dir {data_dir}" in out
