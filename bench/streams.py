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
REPO = Path(__file__).resolve().parent.parent


def holder_process(holder: str, address: str, job_id: str, count: int) -> subprocess.Popen[str]:
    """A process holding `count` streams: grpc-python (bench.load hold) or grpc-js (bench/hold.js)."""
    if holder == "python":
        return load_process("hold", address, job_id, str(count))
    env = {**os.environ, "NODE_PATH": str(REPO / "clients" / "node" / "node_modules")}
    return subprocess.Popen(
        ["node", str(REPO / "bench" / "hold.js"), address, job_id, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def streams(count: int, processes: int = 4, holder: str = "python") -> None:
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
            holders = [holder_process(holder, address, created.id, count // processes) for _ in range(processes)]
            for process in holders:
                assert process.stdout is not None and process.stdout.readline().strip() == "open"
            holding_mib = server.memory_info().rss / 2**20
            pb_grpc.TrainingServiceStub(channel).StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=60)
            results = [read_json_line(holder) for holder in holders]
            for process in holders:
                process.wait(60)
        os.kill(serve.pid, signal.SIGTERM)
        serve.wait(30)
    record(
        "streams",
        impl="florist-grpc",
        holder=holder,
        streams=count,
        rss_idle_mib=idle_mib,
        rss_holding_mib=holding_mib,
        kib_per_stream=(holding_mib - idle_mib) * 1024 / count,
        all_received=min(r["min_events"] for r in results) >= 2,
        resumed=sum(r["resumed"] for r in results),
        cut_after=_merged([r["cut_after"] for r in results]),
        why=_merged([r.get("why", {}) for r in results]),
    )


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            out[str(key)] = out.get(str(key), 0) + n
    return out


def run(quick: bool = False) -> None:
    streams(1000 if quick else GOAL_STREAMS)
    # The same streams held by grpc-js: tells whether cut streams come from grpc-python's client.
    streams(1000 if quick else GOAL_STREAMS, holder="node")
    if not quick:
        streams(5000)
