"""Documents shaped exactly as FL4Health's reporters write them travel through ingest, StreamMetrics,
`florist-grpc train watch` and `plot` unchanged and readable (real Redis, real follower, real gRPC)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from florist_grpc.cli.curves import figure
from florist_grpc.domain import merge_patch
from florist_grpc.progress import JobProgress
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread


def rebuilt_reports(plane: ControlPlaneThread, job: simulation.SimulatedJob) -> dict[str, dict[str, Any]]:
    """Every source's report, rebuilt from the job's StreamMetrics events."""
    rebuilt: dict[str, dict[str, Any]] = {}
    for event in plane.events(job.job_id):
        if event.source.kind == pb.SOURCE_KIND_JOB:
            continue
        key = "server" if event.source.kind == pb.SOURCE_KIND_SERVER else f"client{event.source.client_index}"
        rebuilt[key] = merge_patch.apply(rebuilt.get(key, {}), json_format.MessageToDict(event.patch))
    return rebuilt


def florist_grpc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in its own process."""
    command = [sys.executable, "-m", "florist_grpc", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_fl4health_shaped_reports_round_trip_and_train_watch_reads_them(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    simulation.play_rounds(job, 3)
    simulation.finish(plane.plane, job)

    rebuilt = rebuilt_reports(plane, job)
    for key, reporter in job.reporters.items():
        assert rebuilt[key] == reporter.report, key  # every key, nesting and value exactly
    server_round = rebuilt["server"]["rounds"]["2"]
    assert server_round["val - loss - aggregated"] == 0.5  # at round level, as FL4Health writes it
    assert server_round["eval_round_metrics_aggregated"] == {"val - prediction - accuracy": 0.1}
    assert rebuilt["client1"]["rounds"]["3"]["eval_round_loss"] == 1 / 3  # a number, not a dict

    watched = subprocess.run(
        [sys.executable, "-m", "florist_grpc", "train", "watch", job.job_id, "--address", plane.address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert watched.returncode == 0, watched.stderr
    assert "round 1/3: val loss 1.0000" in watched.stdout and "round 3/3: val loss 0.3333" in watched.stdout
    assert "val accuracy 0.1500" in watched.stdout  # read from eval_round_metrics_aggregated, no suffix
    assert watched.stdout.splitlines()[-1].startswith("final state: JOB_STATE_FINISHED_SUCCESSFULLY")


# FL4Health's documents for 3 rounds of 2 clients (simulation.play_fl4health_rounds): per round n the validation
# loss 1/n, the accuracy n/20, and the clients' training losses 1/n and 1/(n+1), which no server report holds.
ROUNDS = (1, 2, 3)


def val_loss(n: int) -> float:
    return 1 / n


def train_loss(n: int) -> float:
    return (1 / n + 1 / (n + 1)) / 2  # the clients' mean: their reports give no sample counts to weigh by


def test_fl4health_call_order_shows_every_rounds_train_loss_val_loss_and_accuracy_in_watch_and_plot(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    simulation.play_fl4health_rounds(job, len(ROUNDS))
    simulation.finish(plane.plane, job)
    rebuilt = rebuilt_reports(plane, job)
    assert {key: rebuilt[key] for key in job.reporters} == {key: r.report for key, r in job.reporters.items()}
    assert all("train - loss" not in rebuilt["server"]["rounds"][str(n)]["fit_round_metrics"] for n in ROUNDS)

    watched = florist_grpc("train", "watch", job.job_id, "--address", plane.address)
    assert watched.returncode == 0, watched.stderr
    for n in ROUNDS:  # told as each round ends; the accuracy with it or on a line of its own, never as missing
        told = [line for line in watched.stdout.splitlines() if line.startswith(f"round {n}/3: ")]
        assert told[0].startswith(f"round {n}/3: val loss {val_loss(n):.4f}"), watched.stdout
        assert f"val accuracy {n / 20:.4f}" in " ".join(told) and " -" not in " ".join(told), told
        # The final table: ROUND, VAL LOSS, VAL ACCURACY, TRAIN LOSS, then each client's accuracy.
        row = rf"^{n}\s+{val_loss(n):.4f}\s+{n / 20:.4f}\s+{train_loss(n):.4f}\s+{n / 20:.4f}\s+{n / 20:.4f}\s*$"
        assert re.search(row, watched.stdout, re.M), watched.stdout
    assert "train loss: the clients' mean, unweighted" in watched.stdout

    png, table = tmp_path / "curves.png", tmp_path / "curves.csv"
    plotted = florist_grpc("plot", job.job_id, "--out", png, "--csv", table, "--address", plane.address)
    assert plotted.returncode == 0, plotted.stderr
    with table.open(newline="") as f:
        aggregated = [r for r in csv.DictReader(f) if r["source"] == "aggregated"]
    got = [(r["round"], float(r["val_loss"]), float(r["val_accuracy"]), float(r["train_loss"])) for r in aggregated]
    assert got == [(str(n), val_loss(n), n / 20, train_loss(n)) for n in ROUNDS]
    progress = JobProgress.from_reports(plane.get(job.job_id))  # what `plot` draws, drawn the same way
    train_panel = figure(progress.rounds_table(), progress.n_clients, "t").axes[1]
    legend = train_panel.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["aggregated (the clients' mean, unweighted)", "client 0", "client 1"]


def test_an_fl4health_job_whose_clients_report_only_losses_shows_every_round(plane: ControlPlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    simulation.play_fl4health_rounds(job, len(ROUNDS), client_metrics=False)
    simulation.finish(plane.plane, job)
    server = rebuilt_reports(plane, job)["server"]
    assert all("eval_round_metrics_aggregated" not in server["rounds"][str(n)] for n in ROUNDS)

    watched = florist_grpc("train", "watch", job.job_id, "--address", plane.address)
    assert watched.returncode == 0, watched.stderr
    told = [line for line in watched.stdout.splitlines() if line.startswith("round ")]
    assert told == [f"round {n}/3: val loss {val_loss(n):.4f}" for n in ROUNDS]
    for n in ROUNDS:  # no accuracy anywhere, every other number there
        row = rf"^{n}\s+{val_loss(n):.4f}\s+-\s+{train_loss(n):.4f}\s+-\s+-\s*$"
        assert re.search(row, watched.stdout, re.M), watched.stdout
