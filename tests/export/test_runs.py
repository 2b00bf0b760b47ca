"""Each job becomes an MLflow run and a TensorBoard run directory: every round's metrics, aggregated and per client,
with the round as the step; the job's parameters and tags; the run's status following the job's end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from florist_grpc.domain.model import JobState
from florist_grpc.domain.tracking import TrackingConfig
from florist_grpc.testing.plane import ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import SimulatedJob, create_running, finish, play_rounds
from tests.export.conftest import history, run_of

ROUNDS = 3
CLIENTS = 2
AGGREGATED = {"val - loss - aggregated", "train - loss", "val - prediction - accuracy", "train - prediction - accuracy"}
# "train.acc $": MLflow refuses `$` in a name, so it becomes `_`.
PER_CLIENT = {
    "val - loss",
    "train - loss",
    "val - prediction - accuracy",
    "train - prediction - accuracy",
    "train.acc _",
}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, mlflow_url: str) -> Iterator[ControlPlaneThread]:
    root = tmp_path_factory.mktemp("plane")
    running = ControlPlaneThread.in_dir(
        root / "florist", mlflow_tracking_uri=mlflow_url, tensorboard_dir=root / "tensorboard"
    )
    yield running
    running.stop()


def ran(plane: ControlPlaneThread, state: JobState = JobState.FINISHED_SUCCESSFULLY, **kwargs: object) -> SimulatedJob:
    job = create_running(plane.plane, n_clients=CLIENTS, **kwargs)  # type: ignore[arg-type]
    play_rounds(job, ROUNDS)
    wait_for(lambda: "3" in plane.plane.store.get_job(job.job_id).server_metrics.get("rounds", {}), 30, "round 3")  # type: ignore[union-attr]
    finish(plane.plane, job, state)
    return job


def test_a_job_becomes_an_mlflow_run_with_every_round_once(plane: ControlPlaneThread, mlflow: MlflowClient) -> None:
    job = ran(plane)
    run = run_of(mlflow, job.job_id, "FINISHED")
    metrics = history(mlflow, run)
    expected = AGGREGATED | {f"client{i}/{name}" for i in range(CLIENTS) for name in PER_CLIENT}
    assert set(metrics) == expected
    for key, values in metrics.items():
        assert [step for step, _ in values] == [1, 2, 3], key  # one value per round: the round is the step
    steps = range(1, ROUNDS + 1)
    assert metrics["val - loss - aggregated"] == [(n, pytest.approx(1 / n)) for n in steps]
    assert metrics["val - prediction - accuracy"] == [(n, pytest.approx(n / 20)) for n in steps]
    assert metrics["client1/train - loss"] == [(n, pytest.approx(1 / (n + 1))) for n in steps]
    assert metrics["client0/val - loss"] == [(n, pytest.approx(1 / n)) for n in steps]
    assert metrics["client1/train.acc _"] == [(n, pytest.approx(n / 10)) for n in steps]
    assert run.info.run_name == job.job_id
    assert mlflow.get_experiment(run.info.experiment_id).name == "florist-grpc"
    params = run.data.params
    assert {k: params[k] for k in ("model", "strategy", "optimizer", "client_type", "clients")} == {
        "model": "MLP",
        "strategy": "FEDAVG",
        "optimizer": "SGD",
        "client_type": "FEDAVG",
        "clients": str(CLIENTS),
    }
    assert params["server_config.n_server_rounds"] == "3" and params["server_config.batch_size"] == "32"
    assert run.data.tags["florist.job_id"] == job.job_id
    # A simulated job is stored without an owner (tests/unit/test_export_points.py has one with it).
    assert run.data.tags["florist.project"] == "default" and "florist.owner" not in run.data.tags
    assert run.data.tags["florist.state"] == "FINISHED_SUCCESSFULLY"


def test_the_job_names_its_experiment_and_adds_tags(plane: ControlPlaneThread, mlflow: MlflowClient) -> None:
    tracking = TrackingConfig("vision team: digits", {"team": "vision", "dataset/version": "8x8 v2"})
    job = ran(plane, tracking=tracking)
    run = run_of(mlflow, job.job_id, "FINISHED")
    assert mlflow.get_experiment(run.info.experiment_id).name == "vision team: digits"
    assert run.data.tags["team"] == "vision" and run.data.tags["dataset/version"] == "8x8 v2"
    assert run.data.tags["florist.job_id"] == job.job_id


@pytest.mark.parametrize(
    ("state", "status"), [(JobState.FINISHED_WITH_ERROR, "FAILED"), (JobState.CANCELLED, "KILLED")]
)
def test_the_run_status_follows_the_job_end(
    plane: ControlPlaneThread, mlflow: MlflowClient, state: JobState, status: str
) -> None:
    job = ran(plane, state)
    run = run_of(mlflow, job.job_id, status)
    assert run.data.tags["florist.state"] == state.name
    assert run.info.end_time is not None


def test_tensorboard_reads_one_scalar_per_metric_per_round(plane: ControlPlaneThread) -> None:
    job = ran(plane)
    tensorboard_dir = plane.settings.tensorboard_dir
    assert tensorboard_dir is not None
    cursor = Path(plane.settings.data_dir) / "jobs" / job.job_id / "export" / "tensorboard.json"
    wait_for(lambda: cursor.exists() and '"done": true' in cursor.read_text(), 30, "the TensorBoard run complete")
    events = EventAccumulator(str(tensorboard_dir / job.job_id))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    # TensorBoard takes any name: the reports' own ones, `$` included.
    expected = AGGREGATED | {f"client{i}/{name}" for i in range(CLIENTS) for name in PER_CLIENT - {"train.acc _"}}
    assert tags == expected | {f"client{i}/train.acc $" for i in range(CLIENTS)}
    for tag in tags:
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [e.value for e in events.Scalars("val - loss - aggregated")] == pytest.approx([1, 1 / 2, 1 / 3])
