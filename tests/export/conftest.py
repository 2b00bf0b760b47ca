"""One real MLflow tracking server for the tests of this package (`mlflow server`: SQLite backend store, local
artifact root, loopback, a free port), and the reads the tests make of it with MlflowClient."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from florist_grpc.net import LOOPBACK, free_service_port
from florist_grpc.testing.plane import wait_for

BIN = Path(sys.executable).parent
START_SECONDS = 120.0  # it runs its database migrations first: 15 s on a busy 2-core machine


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_service_port()
    url = f"http://{LOOPBACK}:{port}"
    # A process group of its own: `mlflow server` runs uvicorn as a child, stopped with it.
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        wait_for(lambda: process.poll() is not None or _healthy(url), START_SECONDS, "the MLflow server to answer")
        assert process.poll() is None, f"mlflow server exited: see {root / 'server.log'}"
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="session")
def mlflow(mlflow_url: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_url)


def runs_of(client: MlflowClient, job_id: str) -> list[Run]:
    """Every run of the job, in any experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, f"tags.`florist.job_id` = '{job_id}'"))


def run_of(client: MlflowClient, job_id: str, status: str = "", timeout: float = 60.0) -> Run:
    """The job's one run, once it exists (in `status`, if given)."""

    def found() -> Run | None:
        runs = runs_of(client, job_id)
        assert len(runs) <= 1, f"job {job_id} has {len(runs)} runs"
        if runs and (not status or runs[0].info.status == status):
            return runs[0]
        return None

    return wait_for(found, timeout, f"job {job_id}'s MLflow run" + (f" {status}" if status else ""))


def history(client: MlflowClient, run: Run) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run: its (step, value) pairs as MLflow holds them, in step order."""
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in client.get_run(run.info.run_id).data.metrics
    }
