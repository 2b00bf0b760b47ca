"""MLflow down while a job runs: the job runs and ends as usual, the control plane says once that MLflow is
unreachable and once that it is back, and then the run is completed from the job store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from florist_grpc.export import backlog
from florist_grpc.testing.plane import ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.export.conftest import history, run_of, runs_of
from tests.export.gate import Gate


@pytest.fixture
def gate(mlflow_url: str) -> Iterator[Gate]:
    door = Gate(int(mlflow_url.rsplit(":", 1)[1]))
    yield door
    door.close()


def test_mlflow_down_while_a_job_runs_never_holds_the_job_and_the_run_completes_once_it_is_back(
    tmp_path: Path, gate: Gate, mlflow: MlflowClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "BACKOFF_MAX_SECONDS", 1.0)  # retried within a second once it is back
    caplog.set_level(logging.WARNING, logger="florist_grpc.export")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", mlflow_tracking_uri=gate.url)
    try:
        job = create_running(plane.plane, n_clients=2)
        play_rounds(job, 3)
        started = time.monotonic()
        finish(plane.plane, job)  # the job's end does not wait for MLflow
        assert time.monotonic() - started < 10
        assert plane.get(job.job_id).state == 3  # JOB_STATE_FINISHED_SUCCESSFULLY
        wait_for(lambda: any("is unreachable" in r.getMessage() for r in caplog.records), 30, "the warning")
        assert runs_of(mlflow, job.job_id) == []
        gate.open()
        run = run_of(mlflow, job.job_id, "FINISHED")
        metrics = history(mlflow, run)
        assert metrics["val - loss - aggregated"] == [(n, pytest.approx(1 / n)) for n in (1, 2, 3)]
        assert all([step for step, _ in values] == [1, 2, 3] for values in metrics.values())
        unreachable = [r for r in caplog.records if "is unreachable" in r.getMessage()]
        back = [r for r in caplog.records if "is reachable again" in r.getMessage()]
        assert len(unreachable) == 1 and len(back) == 1  # said once each, however many attempts failed
        assert all(r.levelno == logging.WARNING for r in unreachable + back)
    finally:
        plane.stop()
