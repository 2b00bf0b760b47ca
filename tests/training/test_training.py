"""Real federated training: Flower server and client processes, a real Redis, real torch models."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path

import grpc
import pytest
from safetensors.torch import load_file

from florist_grpc.cli.models import download_model
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.fl.models import build_model
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import TERMINAL, fl_processes, job_message, no_fl_process_left, short_timeouts, wait_for

ACCURACY = "val - prediction - accuracy"
# FL4Health's reporters write exactly these keys (DESIGN.md "Decisions"); ours must too.
SERVER_KEYS = {"host_type", "fit_start", "fit_elapsed_time", "fit_end", "num_rounds", "shutdown", "rounds"}
SERVER_ROUND_KEYS = {
    "fit_round_start",
    "fit_round_end",
    "fit_round_time_elapsed",
    "fit_round_metrics",
    "val - loss - aggregated",
    "round",
    "eval_round_start",
    "eval_round_end",
    "eval_round_time_elapsed",
    "fit_epoch",
    "eval_round_metrics_aggregated",
}
CLIENT_KEYS = {"host_type", "initialized", "shutdown", "rounds"}
CLIENT_ROUND_KEYS = {
    "round",
    "round_start",
    "round_end",
    "fit_round_start",
    "fit_round_end",
    "fit_round_time_elapsed",
    "fit_round_losses",
    "fit_round_metrics",
    "fit_step",
    "fit_epoch",
    "eval_round_start",
    "eval_round_end",
    "eval_round_time_elapsed",
    "eval_round_loss",
    "eval_round_metrics",
}


def server_round(plane: ControlPlaneThread, job_id: str, n: int) -> bool:
    metrics = plane.get(job_id).server_metrics
    return "rounds" in metrics and str(n) in metrics["rounds"]


def test_a_two_client_job_reports_fl4healths_layout_with_rising_accuracy_and_keeps_its_models(
    plane: ControlPlaneThread, demo_data: list[str], tmp_path: Path
) -> None:
    job = plane.create(job_message(demo_data, rounds=3, checkpoint_rounds=2))
    started = plane.start(job.id)
    assert started.server_uuid and len(started.client_uuids) == 2
    events = plane.events(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    done = plane.get(job.id)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    assert done.start_time.seconds and done.end_time.seconds and not done.error_message
    server = done.server_metrics
    assert set(server.keys()) == SERVER_KEYS and server["host_type"] == "server" and server["num_rounds"] == 3
    rounds = server["rounds"]
    assert sorted(rounds.keys()) == ["1", "2", "3"]
    for n in ("1", "2", "3"):
        assert set(rounds[n].keys()) == SERVER_ROUND_KEYS, n
        assert rounds[n]["round"] == int(n) and rounds[n]["fit_epoch"] == int(n)
        assert set(rounds[n]["eval_round_metrics_aggregated"]) == {ACCURACY}  # names as the clients report them
        assert isinstance(rounds[n]["val - loss - aggregated"], float)
    accuracies = [rounds[n]["eval_round_metrics_aggregated"][ACCURACY] for n in ("1", "2", "3")]
    assert accuracies[-1] > accuracies[0]
    assert min(accuracies) >= 0.0 and max(accuracies) <= 1.0
    for client, uuid in zip(done.clients, started.client_uuids, strict=True):
        assert client.uuid == uuid and client.state == job_pb2.CLIENT_STATE_FINISHED
        assert set(client.metrics.keys()) == CLIENT_KEYS and client.metrics["host_type"] == "client"
        for n in ("1", "2", "3"):
            r = client.metrics["rounds"][n]
            assert set(r.keys()) == CLIENT_ROUND_KEYS, n
            assert r["fit_round_losses"]["backward"] > 0 and isinstance(r["eval_round_loss"], float)
            assert r["fit_round_end"] <= r["round_end"] <= r["eval_round_start"]  # round_end = end of fit
    no_fl_process_left()
    # The global model of the last round, and of every 2nd round (checkpoint_rounds=2), are kept.
    final = tmp_path / "final.safetensors"
    artifact = download_model(plane.channel, (), job.id, 0, final)
    assert artifact.format == "safetensors" and artifact.round == 3 and artifact.model == "MLP"
    assert list(artifact.input_shape) == [20] and artifact.num_classes == 4
    assert artifact.size_bytes == final.stat().st_size
    assert artifact.sha256 == hashlib.sha256(final.read_bytes()).hexdigest()
    module = build_model("MLP", [20], 4, dict(artifact.model_config))
    module.load_state_dict(load_file(str(final)))  # the file rebuilds the model exactly
    assert download_model(plane.channel, (), job.id, 2, tmp_path / "r2.safetensors").round == 2
    with pytest.raises(grpc.RpcError) as raised:
        download_model(plane.channel, (), job.id, 1, tmp_path / "r1.safetensors")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "[2, 3]" in (raised.value.details() or "")
    assert not (tmp_path / "r1.safetensors").exists()
    # Deleting the job deletes its models.
    plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job.id), timeout=30)
    assert not (plane.settings.data_dir / "jobs" / job.id).exists()


def test_a_seeded_job_gives_the_same_per_round_losses_on_a_rerun(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    def losses() -> list[object]:
        message = job_message(demo_data, rounds=2, seed=7)
        message.model_config.update({"hidden_sizes": [32, 16], "dropout": 0.2})  # dropout draws random numbers
        job = plane.create(message)
        plane.start(job.id)
        assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
        done = plane.get(job.id)
        server = [r["val - loss - aggregated"] for _, r in sorted(done.server_metrics["rounds"].items())]
        clients = [
            (r["fit_round_losses"]["backward"], r["eval_round_loss"])
            for c in done.clients
            for _, r in sorted(c.metrics["rounds"].items())
        ]
        return [server, clients]

    first, second = losses(), losses()
    assert first == second  # exactly, not approximately
    no_fl_process_left()


def test_killing_the_fl_server_mid_training_fails_the_job_within_seconds(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=1000))
    plane.start(job.id)
    wait_for(lambda: server_round(plane, job.id, 2), 60, "round 2")
    os.kill(plane.plane.store.get_job(job.id).server_process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    failed = plane.wait_state(job.id, TERMINAL, timeout=10)
    assert failed.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert "FL server" in failed.error_message and "SIGKILL" in failed.error_message
    no_fl_process_left()


def test_a_killed_client_ends_the_job(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    job = plane.create(job_message(demo_data, rounds=1000))
    plane.start(job.id)
    wait_for(lambda: server_round(plane, job.id, 2), 60, "round 2")
    os.kill(plane.plane.store.get_job(job.id).clients[1].process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    failed = plane.wait_state(job.id, TERMINAL, timeout=15)
    assert failed.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert "FL client 1" in failed.error_message and "SIGKILL" in failed.error_message
    assert failed.clients[1].state == job_pb2.CLIENT_STATE_FAILED
    no_fl_process_left()


def test_of_five_concurrent_starts_exactly_one_succeeds(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    job = plane.create(job_message(demo_data, rounds=1))
    outcomes: list[object] = []
    barrier = threading.Barrier(5)

    def start() -> None:
        barrier.wait()
        try:
            outcomes.append(plane.start(job.id))
        except grpc.RpcError as exc:
            outcomes.append(exc.code())

    threads = [threading.Thread(target=start) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, pb.StartTrainingResponse) for o in outcomes) == 1
    assert outcomes.count(grpc.StatusCode.FAILED_PRECONDITION) == 4
    assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    no_fl_process_left()


def test_stop_training_cancels_the_job_and_leaves_no_process(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    job = plane.create(job_message(demo_data, rounds=1000))
    plane.start(job.id)
    wait_for(lambda: server_round(plane, job.id, 1), 60, "round 1")
    stopped = plane.training.StopTraining(pb.StopTrainingRequest(job_id=job.id), timeout=60).job
    assert stopped.state == job_pb2.JOB_STATE_CANCELLED
    assert stopped.end_time.seconds
    no_fl_process_left(timeout=5)
    assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_CANCELLED
    with pytest.raises(grpc.RpcError) as raised:
        plane.training.StopTraining(pb.StopTrainingRequest(job_id=job.id), timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_server_not_ready_in_time_is_deadline_exceeded_and_cleaned_up(tmp_path: Path, demo_data: list[str]) -> None:
    slow = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(server_ready_seconds=0.01))
    try:
        job = slow.create(job_message(demo_data))
        with pytest.raises(grpc.RpcError) as raised:
            slow.start(job.id)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        failed = slow.get(job.id)
        assert failed.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR and "not ready" in failed.error_message
        no_fl_process_left(timeout=5)
    finally:
        slow.stop()


def test_starting_an_unknown_or_finished_job_is_refused(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plane.start("nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    job = plane.create(job_message(demo_data, rounds=1))
    plane.start(job.id)
    plane.events(job.id)
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "FINISHED_SUCCESSFULLY" in (raised.value.details() or "")


def test_stream_logs_serves_a_log_from_an_offset_and_follows_until_the_end(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=2))
    plane.start(job.id)
    followed = "".join(
        chunk.text
        for chunk in plane.training.StreamLogs(
            pb.StreamLogsRequest(job_id=job.id, source=pb.LogSource(server=True), follow=True), timeout=120
        )
    )
    assert plane.get(job.id).state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    assert "FL server" not in followed or "failed" not in followed
    assert "Run finished 2 round(s)" in followed or "[SUMMARY]" in followed
    chunks = list(plane.training.StreamLogs(pb.StreamLogsRequest(job_id=job.id, offset=10), timeout=30))
    assert "".join(c.text for c in chunks) == followed.encode()[10:].decode("utf-8", "replace")
    assert chunks[-1].next_offset == len(followed.encode())
    client_log = plane.training.StreamLogs(
        pb.StreamLogsRequest(job_id=job.id, source=pb.LogSource(client_index=1)), timeout=30
    )
    assert "".join(c.text for c in client_log)
    with pytest.raises(grpc.RpcError) as raised:
        list(plane.training.StreamLogs(pb.StreamLogsRequest(job_id=job.id, source=pb.LogSource(client_index=5))))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("strategy", "model", "extra"),
    [
        (
            "FEDPROX",
            "MLP",
            {
                "adapt_proximal_weight": True,
                "initial_proximal_weight": 0.1,
                "proximal_weight_delta": 0.05,
                "proximal_weight_patience": 1,
            },
        ),
        ("FEDADAM", "MLP", {"server_learning_rate": 0.05}),
        ("KRUM", "MLP", {}),
        ("FEDAVG", "MNIST_CNN", {}),
        ("FEDAVG", "CNN", {}),
    ],
)
def test_other_strategies_and_models_train_to_completion(
    plane: ControlPlaneThread, tmp_path: Path, strategy: str, model: str, extra: dict[str, object]
) -> None:
    paths = [str(p) for p in write_synthetic(tmp_path, 2, samples_per_client=120, model=model)]
    message = job_message(paths, rounds=2, strategy=strategy, **extra)
    message.model = model
    job = plane.create(message)
    plane.start(job.id)
    assert plane.events(job.id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, plane.get(job.id)
    assert sorted(plane.get(job.id).server_metrics["rounds"].keys()) == ["1", "2"]
    assert not fl_processes() or no_fl_process_left() is None
