"""Concurrent StreamMetrics streams one `florist-grpc serve` process holds, and its memory while holding them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import psutil

from bench.harness import load_process, read_json_line
from bench.stats import record
from florist_grpc.api.convert import dict_to_struct
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc

GOAL_STREAMS = 2000
GOAL_RSS_MIB = 1024


def streams(count: int, processes: int = 4) -> None:
    with tempfile.TemporaryDirectory(prefix="florist-bench-") as directory:
        serve = subprocess.Popen(
            [str(Path(sys.executable).parent / "florist-grpc"), "serve", "--port", "0", "--data-dir", directory],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert serve.stdout is not None
        address = serve.stdout.readline().strip().rsplit(" ", 1)[-1]
        server = psutil.Process(serve.pid)
        idle_mib = server.memory_info().rss / 2**20
        with grpc.insecure_channel(address) as channel:
            # A job that fails at once (its data is missing): starting it sends every stream two events and ends it.
            job = job_pb2.Job(
                model="MLP",
                strategy="FEDAVG",
                optimizer="SGD",
                client_type="FEDAVG",
                server_config=dict_to_struct({"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1}),
                clients=[job_pb2.ClientInfo(data_path=f"{directory}/missing.pt")],
            )
            created = (
                job_service_pb2_grpc.JobServiceStub(channel)
                .CreateJob(job_service_pb2.CreateJobRequest(job=job), timeout=10)
                .job
            )
            # Several client processes: one Python gRPC client process is itself the limit long before the server.
            holders = [load_process("hold", address, created.id, str(count // processes)) for _ in range(processes)]
            for holder in holders:
                assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
            holding_mib = server.memory_info().rss / 2**20
            pb_grpc.TrainingServiceStub(channel).StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=60)
            results = [read_json_line(holder) for holder in holders]
            for holder in holders:
                holder.wait(60)
        os.kill(serve.pid, signal.SIGTERM)
        serve.wait(30)
    record(
        "streams",
        impl="florist-grpc",
        streams=count,
        rss_idle_mib=idle_mib,
        rss_holding_mib=holding_mib,
        kib_per_stream=(holding_mib - idle_mib) * 1024 / count,
        all_received=min(r["min_events"] for r in results) >= 2,
        resumed=sum(r["resumed"] for r in results),
        cut_after={
            k: sum(r["cut_after"].get(k, 0) for r in results) for k in {k for r in results for k in r["cut_after"]}
        },
    )


def run(quick: bool = False) -> None:
    streams(1000 if quick else GOAL_STREAMS)
    if not quick:
        streams(5000)
