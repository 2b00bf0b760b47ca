"""Shared test helpers: job bodies, process checks, short timeouts (the in-process control plane and condition
waits ship in the package: florist_grpc/testing/plane.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psutil

from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Timeouts
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import TEST_TIMEOUTS, wait_for

TERMINAL = {
    job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,
    job_pb2.JOB_STATE_FINISHED_WITH_ERROR,
    job_pb2.JOB_STATE_CANCELLED,
}


def job_message(data_paths: list[str], rounds: int = 3, strategy: str = "FEDAVG", **config: Any) -> job_pb2.Job:
    client_type = "FEDPROX" if strategy == "FEDPROX" else "FEDAVG"
    server_config = {"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1, **config}
    return job_pb2.Job(
        model="MLP",
        strategy=strategy,
        optimizer="SGD",
        client_type=client_type,
        server_config=dict_to_struct(server_config),
        clients=[job_pb2.ClientInfo(data_path=p) for p in data_paths],
    )


def fl_processes() -> list[psutil.Process]:
    """Live FL server/client processes descended from this test run (directly or through a control plane)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if ("florist_grpc.fl.server" in cmd or "florist_grpc.fl.client" in cmd) and p.status() != "zombie":
                out.append(p)
        except psutil.Error:
            continue
    return out


def no_fl_process_left(timeout: float = 15.0) -> None:
    wait_for(lambda: not fl_processes(), timeout, "every FL process to be gone")


def short_timeouts(**kwargs: float) -> Timeouts:
    return replace(TEST_TIMEOUTS, **kwargs)
