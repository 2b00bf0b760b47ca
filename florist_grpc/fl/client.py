"""The FL client process: `python -m florist_grpc.fl.client` (the run in FLORIST_RUN).

Exit codes: 0 done, 2 unusable data (the message names the file), 1 anything else.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from florist_grpc.fl.device import resolve_device
from florist_grpc.fl.process import prepare_process, run_then_exit, use_cpus
from florist_grpc.fl.readiness import await_server_address
from florist_grpc.fl.run_config import ClientRun, take_run_json

log = logging.getLogger("florist.fl.client")
EXIT_BAD_DATA = 2


def build_client(cfg: ClientRun) -> Any:
    """The Flower client of this run; it reports every round in FL4Health's client layout."""
    from datetime import datetime

    import numpy as np
    import torch
    from flwr.client import NumPyClient

    from florist_grpc.fl.batches import batches
    from florist_grpc.fl.data import load_split
    from florist_grpc.fl.last_epoch import LastEpoch
    from florist_grpc.fl.models import build_model
    from florist_grpc.fl.optimizers import build_optimizer
    from florist_grpc.fl.reporter import RedisReporter, now
    from florist_grpc.fl.strategies import TRAIN_ACCURACY, TRAIN_LOSS, VAL_ACCURACY

    training = cfg.training
    seed = training.seed
    split = load_split(
        Path(cfg.data_path), cfg.input_shape, cfg.num_classes, cfg.label_column, training.validation_fraction, seed
    )
    reporter = RedisReporter(cfg.redis_address, cfg.uuid, cfg.redis_username, cfg.redis_password)
    reporter.report_values(host_type="client", initialized=now())
    device = torch.device(resolve_device(cfg.device, torch.cuda.device_count()))
    model = build_model(cfg.model, cfg.input_shape, cfg.num_classes, cfg.model_config, seed).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch_size = training.batch_size
    generator = torch.Generator().manual_seed(seed)
    train_loader = batches(split.train, batch_size, generator)
    val_loader = batches(split.validation, batch_size)
    totals = {"steps": 0, "epochs": 0}

    def set_weights(parameters: list[np.ndarray]) -> None:
        keys = list(model.state_dict().keys())
        model.load_state_dict({k: torch.as_tensor(v, device=device) for k, v in zip(keys, parameters, strict=True)})

    def get_weights() -> list[np.ndarray]:
        return [v.detach().cpu().numpy() for v in model.state_dict().values()]

    class Client(NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return get_weights()

        def fit(
            self, parameters: list[np.ndarray], ins: dict[str, Any]
        ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            server_round = int(ins.get("current_server_round", 0))
            round_start = datetime.now()
            reporter.report_round(server_round, round=server_round, round_start=str(round_start))
            set_weights(parameters)
            mu = float(ins.get("proximal_weight", 0.0)) if cfg.client_type == "FEDPROX" else 0.0
            global_weights = [p.detach().clone() for p in model.parameters()]
            optimizer = build_optimizer(cfg.optimizer, model.parameters(), training)
            model.train()
            fit_start = datetime.now()
            last_epoch = LastEpoch()  # what the round reports: its last local epoch's loss and accuracy (FL4Health)
            for _ in range(training.local_epochs):
                for x_cpu, y_cpu in train_loader:
                    x, y = x_cpu.to(device), y_cpu.to(device)
                    optimizer.zero_grad()
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    if mu > 0:
                        loss = loss + mu / 2 * sum(
                            ((p - g) ** 2).sum() for p, g in zip(model.parameters(), global_weights, strict=True)
                        )
                    loss.backward()
                    optimizer.step()
                    last_epoch.add(totals["epochs"], loss.item(), int((logits.argmax(1) == y).sum()), len(y))
                    totals["steps"] += 1
                totals["epochs"] += 1
            fit_end = datetime.now()
            train_loss, train_accuracy = last_epoch.loss, last_epoch.accuracy
            reporter.report_round(
                server_round,
                fit_round_metrics={TRAIN_ACCURACY: train_accuracy},
                fit_round_losses={"backward": train_loss},
                round=server_round,
                round_start=str(round_start),
                round_end=str(datetime.now()),
                fit_round_start=str(fit_start),
                fit_round_time_elapsed=round((fit_end - fit_start).total_seconds()),
                fit_round_end=str(fit_end),
                fit_step=totals["steps"],
                fit_epoch=totals["epochs"],
            )
            return get_weights(), len(split.train), {TRAIN_ACCURACY: train_accuracy, TRAIN_LOSS: train_loss}

        def evaluate(self, parameters: list[np.ndarray], ins: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
            server_round = int(ins.get("current_server_round", 0))
            start = datetime.now()
            set_weights(parameters)
            model.eval()
            total_loss, correct, seen = 0.0, 0, 0
            with torch.no_grad():
                for x_cpu, y_cpu in val_loader:
                    x, y = x_cpu.to(device), y_cpu.to(device)
                    logits = model(x)
                    total_loss += float(loss_fn(logits, y)) * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
            loss, accuracy = total_loss / max(seen, 1), correct / max(seen, 1)
            end = datetime.now()
            reporter.report_round(
                server_round,
                eval_round_metrics={VAL_ACCURACY: accuracy},
                eval_round_loss=loss,
                eval_round_start=str(start),
                eval_round_time_elapsed=round((end - start).total_seconds()),
                eval_round_end=str(end),
                fit_step=totals["steps"],
                fit_epoch=totals["epochs"],
                round=server_round,
            )
            return loss, len(split.validation), {VAL_ACCURACY: accuracy}

    return Client(), reporter


def run(cfg: ClientRun) -> None:
    from florist_grpc.fl import flower_api
    from florist_grpc.fl.data import DataError
    from florist_grpc.fl.reporter import now

    use_cpus(cfg.cpus)
    try:
        client, reporter = build_client(cfg)
    except DataError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_DATA)
    roots = Path(cfg.root_certificates_file).read_bytes() if cfg.root_certificates_file else None
    address = cfg.server_address
    if cfg.server_host_file:  # started before its server was placed (Slurm): where it runs, once it is ready
        address = await_server_address(cfg.server_host_file, address, cfg.server_host_wait_seconds)
    flower_api.start_client(address, client, roots, cfg.tls_server_name, connect_seconds=cfg.server_host_wait_seconds)
    reporter.report_values(shutdown=now())


def main() -> None:
    prepare_process()
    cfg = ClientRun.from_json(take_run_json())
    run_then_exit(lambda: run(cfg), "client")


if __name__ == "__main__":
    main()
