"""`run --file` on the shipped examples: create + start + watch a real Flower job to success, then its logs and
its curves (the CLI path of the README, end to end)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from florist_grpc.testing.plane import ControlPlaneThread
from tests.cli.conftest import Invoke
from tests.helpers import no_fl_process_left, short_timeouts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["fedavg-mlp.yaml", "fedprox-mlp.json"])
def test_every_example_is_a_valid_job(cli: Invoke, plane: ControlPlaneThread, name: str) -> None:
    result = cli("job", "create", "--file", EXAMPLES / name, "--validate-only", "--address", plane.address)
    assert result.exit_code == 0, result.stderr


@pytest.fixture
def patient_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    """A plane that gives the FL server longer to come up: this test runs while the machine may be busy."""
    running = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(server_ready_seconds=120))
    yield running
    running.stop()


@pytest.mark.slow
def test_run_trains_the_example_to_success_then_logs_and_plot_work(
    cli: Invoke, patient_plane: ControlPlaneThread, tmp_path: Path
) -> None:
    plane = patient_plane
    result = cli("run", "--file", EXAMPLES / "fedavg-mlp.yaml", "--address", plane.address)
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    job_id = re.search(r"created job ([0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    assert "round 3/3: val loss" in out and "val accuracy -" not in out
    assert "final state: JOB_STATE_FINISHED_SUCCESSFULLY" in out
    no_fl_process_left()

    server_log = cli("logs", job_id, "--address", plane.address)
    assert server_log.exit_code == 0 and server_log.stdout
    assert "\x1b[" not in server_log.stdout and "DEPRECATED FEATURE" not in server_log.stdout
    assert " INFO flwr: Starting Flower server" in server_log.stdout  # through the root logger's plain format
    # ... and not a second time through Flower's own console handler ("INFO :      message").
    assert not re.search(r"^(DEBUG|INFO|WARNING|ERROR) *: ", server_log.stdout, re.M)
    client_log = cli("logs", job_id, "--client", "1", "--address", plane.address, "-o", "json")
    assert all("text" in json.loads(line) for line in client_log.stdout.splitlines())

    png, table = tmp_path / "curves.png", tmp_path / "curves.csv"
    assert cli("plot", job_id, "--out", png, "--csv", table, "--address", plane.address).exit_code == 0
    rows = [r for r in csv.DictReader(table.open()) if r["source"] == "aggregated"]
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert all(r["val_loss"] and r["val_accuracy"] for r in rows)
    assert float(rows[-1]["val_accuracy"]) > 0.5  # the synthetic set is learnable
