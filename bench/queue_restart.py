"""The queue across a SIGKILL (issue 20; part of `python -m bench platform`, see bench/platform_scale.py).

`florist-grpc serve --max-running-jobs 2` as its own process, 100 real jobs (one client each, 3 rounds on a small
synthetic set) started at once: two run, the rest wait. Halfway, while both running jobs train, the control plane
is killed with SIGKILL and started again on the same data dir. Every job must finish successfully, in queue order;
from the jobs' own times, how long from a slot freeing (a job's end) to the next job's start (its IN_PROGRESS).
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc

from bench.stats import record, summary
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.testing.plane import wait_for

BIN = Path(sys.executable).parent
QUEUE_GOAL_MS = 100.0
RUNNING = 2  # --max-running-jobs
# Each job: one client, a few rounds on a small set (well under a second with the launcher pool), so that the kill
# lands mid-training.
ROUNDS, SAMPLES = 3, 2000
TERMINAL = {job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, job_pb2.JOB_STATE_FINISHED_WITH_ERROR, job_pb2.JOB_STATE_CANCELLED}


def ms(seconds: float) -> float:
    return seconds * 1000


def serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            str(BIN / "florist-grpc"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--max-running-jobs",
            str(RUNNING),
        ],
        stdout=subprocess.PIPE,
        stderr=open(data_dir.parent / "serve.log", "a"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"serve did not start: {line!r}")
    return process


def list_all(stub: pb_grpc.JobServiceStub) -> list[job_pb2.Job]:
    jobs: list[job_pb2.Job] = []
    token = ""
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(page_size=1000, page_token=token, view=pb.JOB_VIEW_BASIC), timeout=30)
        jobs += page.jobs
        if not (token := page.next_page_token):
            return jobs


def both_training(stub: pb_grpc.JobServiceStub) -> bool:
    """Both slots' jobs have finished a round: their launches are complete (every client connected)."""
    running = [j for j in list_all(stub) if j.state == job_pb2.JOB_STATE_IN_PROGRESS]
    return len(running) == RUNNING and all(j.current_round >= 1 for j in running)


def run(quick: bool) -> None:
    count = 10 if quick else 100
    with tempfile.TemporaryDirectory(prefix="florist-bench-queue-") as directory:
        root = Path(directory)
        data = [str(p) for p in write_synthetic(root / "data", 1, samples_per_client=SAMPLES)]
        port = free_service_port()
        process = serve(root / "florist", port)
        address = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(address)
        jobs, training = pb_grpc.JobServiceStub(channel), training_grpc.TrainingServiceStub(channel)
        try:
            ids = []
            for _ in range(count):
                job = job_pb2.Job(model="MLP", strategy="FEDAVG", optimizer="SGD", client_type="FEDAVG")
                job.server_config.update({"n_server_rounds": ROUNDS, "batch_size": 32, "local_epochs": 1})
                job.clients.append(job_pb2.ClientInfo(data_path=data[0]))
                ids.append(jobs.CreateJob(pb.CreateJobRequest(job=job), timeout=30).job.id)
            began = time.monotonic()
            with ThreadPoolExecutor(16) as pool:  # every StartTraining at once: two run, the rest wait
                answers = pool.map(
                    lambda job_id: training.StartTraining(training_pb.StartTrainingRequest(job_id=job_id), timeout=300),
                    ids,
                )
                queued = sum(answer.queued for answer in answers)

            def ended() -> int:
                return sum(j.state in TERMINAL for j in list_all(jobs))

            wait_for(lambda: ended() >= count // 2, 3600, "half of the jobs to end")
            # Killed while both slots train (past their first round): a job whose launch the kill cuts between its
            # FL server and its clients ends FINISHED_WITH_ERROR (recovery re-attaches what was launched, and the
            # server waits for clients that never come); that is restart recovery's, not the queue's.
            wait_for(lambda: both_training(jobs), 600, "both running jobs to train")
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            killed_at = datetime.now(UTC)
            channel.close()
            process = serve(root / "florist", port)
            channel = grpc.insecure_channel(address)
            jobs = pb_grpc.JobServiceStub(channel)
            wait_for(lambda: ended() == count, 3600, "every job to end")
            wall = time.monotonic() - began
            final = {j.id: j for j in list_all(jobs)}
        finally:
            channel.close()
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    report_queue(ids, final, queued, wall, killed_at)


def report_queue(ids: list[str], final: dict[str, job_pb2.Job], queued: int, wall: float, killed_at: datetime) -> None:
    jobs = [final[i] for i in ids]
    succeeded = sum(j.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY for j in jobs)
    starts = [j.start_time.ToDatetime(tzinfo=UTC) for j in jobs]
    ends = sorted(j.end_time.ToDatetime(tzinfo=UTC) for j in jobs)
    # In order: the jobs that waited started in the order they were queued (equal priorities).
    waited = sorted((j for j in jobs if j.HasField("queue_time")), key=lambda j: j.queue_time.ToNanoseconds())
    started = [j.start_time.ToNanoseconds() for j in waited]
    inversions = sum(1 for a, b in itertools.pairwise(started) if b < a)
    # With 2 slots, the n-th start (n >= 2, in time order) is the one the (n-1)-th end made room for. The first
    # start of each slot after the restart is apart: the restarted control plane's launcher pool is still
    # importing torch and Flower then (a probe and a launch wait for it).
    latencies: list[float] = []
    after_restart: list[float] = []
    for start, freed in zip(sorted(starts)[RUNNING:], ends, strict=False):
        if freed < killed_at < start:
            continue  # a slot freed while the control plane was down
        warming = start > killed_at and len(after_restart) < RUNNING
        (after_restart if warming else latencies).append(ms((start - freed).total_seconds()))
    stats = summary(latencies)
    failures = sorted({j.error_message[:160] for j in jobs if j.state != job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY})
    record(
        "queue",
        jobs=len(ids),
        queued=queued,
        succeeded=succeeded,
        lost=len(ids) - succeeded,
        start_order_inversions=inversions,
        wall_seconds=wall,
        slot_to_start_p50_ms=stats["p50"],
        slot_to_start_p99_ms=stats["p99"],
        slot_to_start_max_ms=stats["max"],
        first_starts_after_restart_ms=[round(v) for v in after_restart],
        goal_ms=QUEUE_GOAL_MS,
        met=stats["p99"] <= QUEUE_GOAL_MS,
        failures=failures,
    )
