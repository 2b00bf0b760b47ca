"""The federated cost: real FL jobs on the 8x8 digits (3 clients; IID and Dirichlet(0.5); FedAvg and FedProx)
against a centralized baseline trained on the same split.

`python -m bench.federated_cost [--rounds 5]`. Every job runs through the control plane (real Flower processes).
The baseline pools the clients' own train splits (the same seeded 80/20 split each client makes), trains the same
MLP from the same initial weights with the same optimizer for one epoch per round, and is scored on the pooled
validation splits -- the examples the federated accuracy is averaged over (weighted by size, so the same set).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import torch
from google.protobuf import json_format
from torch.utils.data import ConcatDataset, DataLoader

from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Settings, Timeouts
from florist_grpc.domain.training import training_config
from florist_grpc.fl.data import load_split
from florist_grpc.fl.make_data import write_digits
from florist_grpc.fl.models import build_model
from florist_grpc.fl.optimizers import build_optimizer
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.testing.plane import ControlPlaneThread

MODEL_CONFIG: dict[str, Any] = {"hidden_sizes": [64], "dropout": 0.0}
CONFIG: dict[str, Any] = {"batch_size": 32, "local_epochs": 1, "learning_rate": 0.05, "momentum": 0.9, "seed": 0}
FEDPROX = {
    "adapt_proximal_weight": False,
    "initial_proximal_weight": 0.01,
    "proximal_weight_delta": 0.0,
    "proximal_weight_patience": 0,
}
ACCURACY = "val - prediction - accuracy"


def federated(plane: ControlPlaneThread, paths: list[Path], strategy: str, rounds: int) -> list[float]:
    extra = FEDPROX if strategy == "FEDPROX" else {}
    job = job_pb2.Job(
        model="MLP",
        strategy=strategy,
        optimizer="SGD",
        client_type=strategy,
        server_config=dict_to_struct({**CONFIG, **extra, "n_server_rounds": rounds}),
        model_config=dict_to_struct(MODEL_CONFIG),
        clients=[job_pb2.ClientInfo(data_path=str(p)) for p in paths],
    )
    with grpc.insecure_channel(plane.address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        training = pb_grpc.TrainingServiceStub(channel)
        created = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job), timeout=30).job
        training.StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=300)
        for _ in training.StreamMetrics(pb.StreamMetricsRequest(job_id=created.id), timeout=1800):
            pass
        done = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=created.id), timeout=30).job
    if done.state != job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY:
        raise RuntimeError(f"{strategy} job ended {job_pb2.JobState.Name(done.state)}: {done.error_message}")
    rounds_done = json_format.MessageToDict(done.server_metrics)["rounds"]
    return [float(rounds_done[str(n)]["eval_round_metrics_aggregated"][ACCURACY]) for n in range(1, rounds + 1)]


def centralized(paths: list[Path], rounds: int) -> list[float]:
    torch.manual_seed(0)
    splits = [load_split(p, (64,), 10, "", 0.2, seed=int(CONFIG["seed"])) for p in paths]
    train: DataLoader[tuple[torch.Tensor, torch.Tensor]] = DataLoader(
        ConcatDataset([s.train for s in splits]),
        batch_size=int(CONFIG["batch_size"]),
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    validation: DataLoader[tuple[torch.Tensor, torch.Tensor]] = DataLoader(
        ConcatDataset([s.validation for s in splits]), batch_size=256
    )
    model = build_model("MLP", (64,), 10, MODEL_CONFIG, seed=int(CONFIG["seed"]))
    training = training_config("FEDAVG", {**CONFIG, "n_server_rounds": rounds})
    optimizer = build_optimizer("SGD", model.parameters(), training)
    loss_fn = torch.nn.CrossEntropyLoss()
    accuracies = []
    for _ in range(rounds):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in validation)
            total = sum(len(y) for _, y in validation)
        accuracies.append(correct / total)
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        plane = ControlPlaneThread(Settings(port=0, data_dir=root / "florist", timeouts=Timeouts()))
        try:
            for partition in ("iid", "dirichlet"):
                paths = write_digits(root / partition, 3, partition, alpha=0.5, seed=0)
                sizes = [len(torch.load(p)["y"]) for p in paths]
                base = centralized(paths, args.rounds)
                print(f"\n{partition} (alpha 0.5)" if partition == "dirichlet" else f"\n{partition}", f"sizes {sizes}")
                print("round  centralized  " + "  ".join(f"{s:>8}" for s in ("FEDAVG", "FEDPROX")))
                results = {}
                for strategy in ("FEDAVG", "FEDPROX"):
                    began = time.monotonic()
                    results[strategy] = federated(plane, paths, strategy, args.rounds)
                    print(f"  ({strategy}: {time.monotonic() - began:.0f}s)", flush=True)
                for n in range(args.rounds):
                    print(
                        f"{n + 1:>5}  {base[n]:11.4f}  {results['FEDAVG'][n]:8.4f}  {results['FEDPROX'][n]:8.4f}",
                        flush=True,
                    )
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
