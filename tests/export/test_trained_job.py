"""A real training job, its control plane SIGKILLed mid-way and restarted: the MLflow run and the TensorBoard run
end complete, with exactly one value per (metric, round), the run FINISHED, and the model artifact the very bytes
DownloadModel serves."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import wait_for
from tests.e2e.conftest import serve, stop
from tests.e2e.test_restart_recovery import Client, cleanup, processes_of  # noqa: F401 - the cleanup fixture
from tests.export.conftest import history, run_of, runs_of
from tests.helpers import TERMINAL, job_message

ROUNDS = 40


def downloaded(client: Client, job_id: str) -> tuple[int, bytes]:
    """The final model as DownloadModel serves it: its round and its bytes."""
    parts = list(client.training.DownloadModel(pb.DownloadModelRequest(job_id=job_id), timeout=60))
    return parts[0].artifact.round, b"".join(p.chunk for p in parts[1:])


def aggregated_steps(mlflow: MlflowClient, job_id: str) -> int:
    runs = runs_of(mlflow, job_id)
    if not runs:
        return 0
    return len(mlflow.get_metric_history(runs[0].info.run_id, "val - loss - aggregated"))


@pytest.mark.slow
def test_a_trained_job_killed_mid_way_reaches_mlflow_and_tensorboard_whole_and_once(
    tmp_path: Path,
    demo_data: list[str],
    mlflow_url: str,
    mlflow: MlflowClient,
    cleanup: list[psutil.Process],  # noqa: F811
) -> None:
    data_dir, tensorboard_dir = tmp_path / "florist", tmp_path / "tensorboard"
    flags = ("--mlflow-tracking-uri", mlflow_url, "--tensorboard-dir", str(tensorboard_dir))
    served = serve(data_dir, *flags)
    client = Client(served)
    request = job_service_pb2.CreateJobRequest(job=job_message(demo_data, rounds=ROUNDS))
    job = client.jobs.CreateJob(request, timeout=30).job
    client.training.StartTraining(pb.StartTrainingRequest(job_id=job.id), timeout=60)
    wait_for(lambda: aggregated_steps(mlflow, job.id) >= 2, 120, "two rounds in MLflow")
    client.channel.close()
    served.process.send_signal(signal.SIGKILL)  # mid-job: the trackers' cursors and MLflow may disagree now
    served.process.wait(10)
    cleanup.extend(processes_of(data_dir, job))
    again = serve(data_dir, *flags)
    try:
        client = Client(again)
        wait_for(lambda: client.get(job.id).state in TERMINAL, 240, "the job to end")
        assert client.get(job.id).state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        run = run_of(mlflow, job.id, "FINISHED", timeout=120)
        metrics = history(mlflow, run)
        assert {"val - loss - aggregated", "val - prediction - accuracy", "client0/val - loss"} <= set(metrics)
        for key, values in metrics.items():
            assert [step for step, _ in values] == list(range(1, ROUNDS + 1)), key  # each round once, none lost
        assert run.data.params["server_config.n_server_rounds"] == str(ROUNDS)
        final_round, model = downloaded(client, job.id)
        artifact = Path(
            mlflow.download_artifacts(run.info.run_id, f"model/round-{final_round}.safetensors", str(tmp_path))
        )
        assert final_round == ROUNDS and artifact.read_bytes() == model
        cursor = data_dir / "jobs" / job.id / "export" / "tensorboard.json"
        wait_for(lambda: '"done": true' in cursor.read_text(), 60, "the TensorBoard run complete")
        events = EventAccumulator(str(tensorboard_dir / job.id))
        events.Reload()
        assert set(events.Tags()["scalars"]) >= {"val - loss - aggregated", "client1/train - loss"}
        for tag in events.Tags()["scalars"]:
            assert [e.step for e in events.Scalars(tag)] == list(range(1, ROUNDS + 1)), tag
    finally:
        assert stop(again) == 0
