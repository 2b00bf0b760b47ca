"""The Node.js example client (grpc-js) runs a real job to success against `florist-grpc serve`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Served

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node" / "index.js"


def run_node_client(served: Served, job_file: Path) -> subprocess.CompletedProcess[str]:
    command = ["node", str(NODE_CLIENT), "--address", served.address, "--job-file", str(job_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_client_creates_starts_and_streams_a_job_to_success(
    served: Served, demo_data: list[str], tmp_path: Path
) -> None:
    job_file = tmp_path / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "job": {
                    "model": "MLP",
                    "strategy": "FEDAVG",
                    "optimizer": "SGD",
                    "client_type": "FEDAVG",
                    "server_config": {"n_server_rounds": 2, "batch_size": 32, "local_epochs": 1},
                    "clients": [{"data_path": p} for p in demo_data],
                }
            }
        )
    )
    result = run_node_client(served, job_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("final state: JOB_STATE_FINISHED_SUCCESSFULLY")
    assert len(re.findall(r"round \d: val loss", result.stdout)) == 2


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_client_exits_non_zero_with_the_status_when_the_job_is_invalid(served: Served, tmp_path: Path) -> None:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"model": "NOPE", "strategy": "FEDAVG", "clients": []}))
    result = run_node_client(served, job_file)
    assert result.returncode != 0
    assert "INVALID_ARGUMENT" in result.stderr
