"""Slurm launcher (issue 21): the same job through `--launcher slurm` and through the local launcher pool, side by
side in one run, alternating, on one machine (a one-node Slurm cluster of the benchmark's own,
florist_grpc/testing/slurm_cluster.py); and how long a failed FL process takes to end its job.

- start: StartTraining latency, StartTraining -> the first round's server metrics, and the job's wall time
  (StartTraining -> terminal event) of a 2-client, 3-round job; rounds of local pool / local spawn / Slurm (each
  Slurm job starts a fresh interpreter, as a spawn does), medians; and Slurm's submit -> start wait.
- failure: a client of a running job (round 1 reported) ended from outside: `scancel` of its Slurm job, and a
  SIGKILL of the pool-forked client locally; time from that call's return to the job's terminal event on its
  StreamMetrics stream.
Without root or the Slurm packages it records why and measures nothing.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import grpc

from bench.stats import percentile, record
from bench.warm import _ends_round_1, job_message, plane, run_job
from florist_grpc.config import Timeouts
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.launcher_config import LauncherSettings
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.slurm_cluster import SlurmCluster, unavailable

KEYS = ("start_s", "first_round_s", "wall_s")


@contextmanager
def slurm_plane(scratch: Path) -> Iterator[ControlPlaneThread]:
    shared = scratch / "shared"
    shared.mkdir(exist_ok=True)
    running = ControlPlaneThread.in_dir(
        scratch / "florist-slurm",
        launcher=LauncherSettings("slurm", shared_dir=shared),
        advertise_host="127.0.0.1",
        launcher_pool=False,
        timeouts=Timeouts(),
    )
    try:
        yield running
    finally:
        running.stop()


def starts(sides: dict[str, ControlPlaneThread], data: list[Path], pairs: int) -> None:
    for running in sides.values():
        run_job(running, data, 3)  # warm-up of each side: first-job effects (Redis connections, page cache) out
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for pair in range(pairs):
        for side, running in sides.items():
            result = run_job(running, data, 3)
            runs[side].append(result)
            record("slurm.start", side=side, pair=pair + 1, **{k: result[k] for k in KEYS})
    medians = {side: {k: statistics.median(r[k] for r in results) for k in KEYS} for side, results in runs.items()}
    for side, values in medians.items():
        record("slurm.start", side=side, pair="median", **values)
    # Slurm's own share: submission to start of every FL process's Slurm job (whole seconds: Slurm's resolution).
    waits = [
        (datetime.fromisoformat(f["StartTime"]) - datetime.fromisoformat(f["SubmitTime"])).total_seconds()
        for line in subprocess.run(
            ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.splitlines()
        if (f := dict(w.split("=", 1) for w in line.split() if "=" in w)).get("JobName", "").startswith("florist-")
        and f.get("StartTime", "Unknown") != "Unknown"
    ]
    record("slurm.queue", jobs=len(waits), submit_to_start_p50_s=percentile(waits, 50), max_s=max(waits, default=0))
    for other in ("local", "spawn"):
        record("slurm.start", ratio=f"slurm/{other}", **{k: medians["slurm"][k] / medians[other][k] for k in KEYS})


def failure(
    running: ControlPlaneThread, data: list[Path], end_client: Callable[[ControlPlaneThread, str], None]
) -> float:
    """Seconds from a client's end (the call that ends it returned) to the job's terminal event."""
    with grpc.insecure_channel(running.address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        created = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(data, 500)), timeout=60).job
        training = pb_grpc.TrainingServiceStub(channel)
        stream = training.StreamMetrics(pb.StreamMetricsRequest(job_id=created.id), timeout=600)
        stream.initial_metadata()
        training.StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=300)
        ended_at = None
        for response in stream:
            event = response.event
            if ended_at is None and event.source.kind == pb.SOURCE_KIND_SERVER and _ends_round_1(event):
                end_client(running, created.id)
                ended_at = time.perf_counter()
            if event.job_state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR:
                assert ended_at is not None
                return time.perf_counter() - ended_at
        raise AssertionError("the job did not end FINISHED_WITH_ERROR")


def scancel_client(running: ControlPlaneThread, job_id: str) -> None:
    job = running.plane.store.get_job(job_id)
    assert job is not None
    subprocess.run(["scancel", job.clients[1].process.slurm_job_id], check=True, timeout=30)


def kill_client(running: ControlPlaneThread, job_id: str) -> None:
    job = running.plane.store.get_job(job_id)
    assert job is not None
    os.kill(job.clients[1].process.pid, signal.SIGKILL)


def run(quick: bool = False) -> None:
    if (why := unavailable()) is not None:
        record("slurm.skipped", why=why)
        return
    cluster = SlurmCluster()
    cluster.start()
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        with tempfile.TemporaryDirectory() as directory:
            scratch = Path(directory)
            data = write_synthetic(scratch / "data", 2)
            record("slurm.load", loadavg_1m=os.getloadavg()[0])
            with plane(True) as local, plane(False) as spawn, slurm_plane(scratch) as slurm:
                starts({"local": local, "spawn": spawn, "slurm": slurm}, data, 2 if quick else 3)
                for i in range(1 if quick else 3):
                    record("slurm.failure", side="slurm", run=i + 1, terminal_s=failure(slurm, data, scancel_client))
                    record("slurm.failure", side="local", run=i + 1, terminal_s=failure(local, data, kill_client))
            record("slurm.load", loadavg_1m=os.getloadavg()[0])
    finally:
        os.environ.pop("SLURM_CONF", None)
        cluster.stop()
