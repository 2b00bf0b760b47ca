"""Warm start (issue 13): FL processes forked from the launcher pool against spawned ones and a plain script.

Every figure is a ratio of two things measured side by side in one run, alternating, on the same data:
- wall: a 2-client, 3-round job, StartTraining to the terminal event (pool, warm) vs the plain script
  (bench/overhead.py: the same FL processes spawned by hand, first spawn to last exit); median of the pairs.
- start: StartTraining latency and time to the first round's server metrics, pool vs spawn.
- rounds: per-round cost of a 50-round job (from the FL server's own round timestamps, round 2 start to the last
  round's end, / rounds-1), through the control plane with the pool vs the plain script.
- clients20: one job with 20 clients, pool vs spawn: wall time, StartTraining, PSS of its FL processes.
- concurrent: N concurrent 2-client jobs, pool vs spawn: wall time (first StartTraining to last terminal event)
  and PSS of all FL processes (the pool process included, on the pool side).
PSS is summed over the processes, sampled every 0.5 s while the job runs (bench/pss_sampler.py); the peak. Beside
it, the machine's anonymous memory at its peak, read whole every 20 ms, less before the job, plus the pool's own.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from bench.overhead import CONFIG, plain_job, plain_script
from bench.pss_sampler import PssPeak
from bench.stats import percentile, record
from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Timeouts
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc
from florist_grpc.testing.plane import ControlPlaneThread, embedded_plane

# Spawned, many processes (and each job's data probe) import torch at once: on 2 cores a spawned FL server needs
# more than the default 30 s to be ready (20 clients, or 20 jobs). Both sides get the same bounds.
PATIENT = Timeouts(server_ready_seconds=300.0, data_check_seconds=300.0)


@contextmanager
def plane(pool: bool, timeouts: Timeouts | None = None) -> Iterator[ControlPlaneThread]:
    """A plane whose launcher pool (if any) is ready, and has moved its heap to huge pages if its revision does so:
    a long-running plane's pool has, once idle (launch/huge_pages.py); here it is asked to at once."""
    setting = os.environ.get("FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS")
    os.environ.setdefault("FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS", "0")  # a caller's own setting (-1: never) wins
    try:
        with embedded_plane(launcher_pool=pool, timeouts=timeouts) as running:
            launcher = running.plane.launcher_pool
            if launcher is not None:
                assert launcher.wait_ready(180), "launcher pool not ready"
                assert launcher.pid is not None
                huge_pages_settled(launcher.pid)
            yield running
    finally:
        if setting is None:
            del os.environ["FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS"]


def huge_pages_settled(pid: int, bound: float = 10.0) -> int:
    """MiB on huge pages once `pid`'s stop growing (0.5 s unchanged), or none 3 s on (an earlier revision's pool)."""
    began, seen, since = time.monotonic(), -1, time.monotonic()
    while time.monotonic() - began < bound:
        kib = rollup_kib(pid, "AnonHugePages")
        if kib != seen:
            seen, since = kib, time.monotonic()
        elif (kib and time.monotonic() - since >= 0.5) or (not kib and time.monotonic() - began >= 3.0):
            break
        time.sleep(0.1)  # polling a figure that has no event to wait on
    return seen >> 10


def rollup_kib(pid: int | str, field: str) -> int:
    """One field of process `pid`'s (or "self"'s) /proc smaps_rollup, in KiB: e.g. AnonHugePages, Anonymous."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith(field + ":"))


def job_message(data: list[Path], rounds: int) -> job_pb2.Job:
    return job_pb2.Job(
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config=dict_to_struct({**CONFIG, "n_server_rounds": rounds}),
        clients=[job_pb2.ClientInfo(data_path=str(p)) for p in data],
    )


def run_job(running: ControlPlaneThread, data: list[Path], rounds: int) -> dict[str, float]:
    """StartTraining to the terminal event; also the StartTraining latency and the first round's metrics."""
    with grpc.insecure_channel(running.address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        created = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job_message(data, rounds)), timeout=60).job
        training = pb_grpc.TrainingServiceStub(channel)
        stream = training.StreamMetrics(pb.StreamMetricsRequest(job_id=created.id), timeout=900)
        stream.initial_metadata()
        began = time.perf_counter()
        training.StartTraining(pb.StartTrainingRequest(job_id=created.id), timeout=300)
        started = time.perf_counter() - began
        first_round: float | None = None
        last = None
        for response in stream:
            last = response.event
            if first_round is None and last.source.kind == pb.SOURCE_KIND_SERVER and _ends_round_1(last):
                first_round = time.perf_counter() - began
        elapsed = time.perf_counter() - began
        assert last is not None and last.job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, last
        done = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=created.id), timeout=30).job
        return {
            "wall_s": elapsed,
            "start_s": started,
            "first_round_s": float("nan") if first_round is None else first_round,
            "per_round_s": per_round(json_format.MessageToDict(done.server_metrics), rounds),
        }


def _ends_round_1(event: pb.MetricsEvent) -> bool:
    rounds = event.patch.fields.get("rounds")
    first = rounds.struct_value.fields.get("1") if rounds is not None else None
    return first is not None and "fit_round_end" in first.struct_value.fields


def per_round(server_report: dict[str, Any], rounds: int) -> float:
    """Seconds per round from the FL server's own timestamps: round 2's start to the last round's end."""
    if rounds < 3:
        return float("nan")
    r = server_report.get("rounds", {})
    start = datetime.fromisoformat(r["2"]["fit_round_start"])
    end = datetime.fromisoformat(r[str(rounds)]["eval_round_end"])
    return (end - start).total_seconds() / (rounds - 2)


def plain_per_round(data: list[Path], scratch: Path, rounds: int) -> tuple[float, float]:
    """The plain script for `rounds` rounds: (wall seconds, seconds per round from the server's report)."""
    elapsed, report = plain_job(data, scratch, {**CONFIG, "n_server_rounds": rounds})
    return elapsed, per_round(report, rounds)


def wall(data: list[Path], scratch: Path, pairs: int) -> None:
    ratios = []
    with plane(pool=True) as running:
        run_job(running, data, 3)  # warm-up: first-job effects (Redis connections, page cache) out of the pairs
        for attempt in range(pairs):
            plain = plain_script(data, scratch)
            ours = run_job(running, data, 3)["wall_s"]
            ratios.append(ours / plain)
            record("warm.wall", pair=attempt, plain_s=plain, pool_s=ours, ratio=ours / plain)
    record("warm.wall", median_ratio=statistics.median(ratios), pairs=pairs, goal=0.75)


def start_latency(data: list[Path], jobs: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"pool": [], "spawn": []}
    with plane(pool=True) as pooled, plane(pool=False) as spawning:
        for _ in range(jobs):
            for name, running in (("pool", pooled), ("spawn", spawning)):
                results[name].append(run_job(running, data, 1))
    for name, runs in results.items():
        starts = [r["start_s"] for r in runs]
        firsts = [r["first_round_s"] for r in runs]
        record(
            "warm.start",
            mode=name,
            n=len(runs),
            start_p50_s=percentile(starts, 50),
            start_p99_s=percentile(starts, 99),
            first_round_p50_s=percentile(firsts, 50),
            first_round_p99_s=percentile(firsts, 99),
        )
    pool_p50 = percentile([r["start_s"] for r in results["pool"]], 50)
    spawn_p50 = percentile([r["start_s"] for r in results["spawn"]], 50)
    pool_first = percentile([r["first_round_s"] for r in results["pool"]], 50)
    spawn_first = percentile([r["first_round_s"] for r in results["spawn"]], 50)
    record("warm.start", start_ratio=pool_p50 / spawn_p50, first_round_ratio=pool_first / spawn_first)


def rounds_cost(data: list[Path], scratch: Path, rounds: int, pairs: int) -> None:
    """Per-round cost, pool vs plain script, in alternating pairs (one run each is at the mercy of the load)."""
    ratios = []
    with plane(pool=True) as running:
        for pair in range(pairs):
            ours = run_job(running, data, rounds)
            plain_wall, plain_round = plain_per_round(data, scratch, rounds)
            ratios.append(ours["per_round_s"] / plain_round)
            record(
                "warm.rounds",
                pair=pair,
                rounds=rounds,
                plain_per_round_s=plain_round,
                pool_per_round_s=ours["per_round_s"],
                ratio=ratios[-1],
                plain_wall_s=plain_wall,
                pool_wall_s=ours["wall_s"],
            )
    record("warm.rounds", median_ratio=statistics.median(ratios), pairs=pairs, goal=1.05)


def rounds(pairs: int = 20, count: int = 50) -> None:
    """`rounds_cost` on its own data, for `bench.compare`: a round's ratio spreads by +-25 % from pair to pair on this
    machine, so a median that resolves 5 % needs ~20 pairs, not the 3 of `run`."""
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        rounds_cost(write_synthetic(scratch / "data", 2), scratch, count, pairs)


def measured(running: ControlPlaneThread, job: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`job`'s figures and its memory: the FL processes' peak PSS, and `anon_gib`, what the machine's anonymous
    memory gained at its peak plus the launcher pool's own, so that the pool and spawn sides count the same."""
    pool = running.plane.launcher_pool
    own = rollup_kib(pool.pid, "Anonymous") << 10 if pool is not None and pool.pid is not None else 0
    with PssPeak() as pss:
        result = job()
    anon_gib = (pss.added + own) / 2**30
    return {**result, "pss_gib": pss.total / 2**30, "processes": float(pss.count), "anon_gib": anon_gib}


def many_clients(scratch: Path, clients: int) -> None:
    data = write_synthetic(scratch / f"data{clients}", clients)
    for pool in (True, False):
        with plane(pool, PATIENT) as running:
            result = measured(running, lambda running=running: run_job(running, data, 3))  # type: ignore[misc]
            record("warm.clients", clients=clients, mode="pool" if pool else "spawn", **result)


def concurrent_jobs(running: ControlPlaneThread, data: list[Path], jobs: int) -> dict[str, float]:
    walls: list[float] = []
    failures: list[str] = []

    def one() -> None:
        try:
            walls.append(run_job(running, data, 3)["wall_s"])
        except Exception as exc:  # counted and shown: one failed job must not hide the others' figures
            failures.append(repr(exc)[:300])

    began = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for failure in failures:
        print("job failed:", failure, flush=True)
    return {
        "wall_s": time.perf_counter() - began,
        "slowest_job_s": max(walls, default=float("nan")),
        "failed": float(len(failures)),
    }


def concurrent(data: list[Path], jobs: int) -> None:
    for pool in (True, False):
        with plane(pool, PATIENT) as running:
            result = measured(running, lambda running=running: concurrent_jobs(running, data, jobs))  # type: ignore[misc]
            record("warm.concurrent", jobs=jobs, mode="pool" if pool else "spawn", **result)


def run(quick: bool = False, only: tuple[str, ...] = ()) -> None:
    sizes = {"pairs": 3, "starts": 3 if quick else 5, "rounds": 10 if quick else 50, "clients": 20, "jobs": 20}
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        data = write_synthetic(scratch / "data", 2)
        parts: dict[str, Callable[[], None]] = {
            "wall": lambda: wall(data, scratch, sizes["pairs"]),
            "start": lambda: start_latency(data, sizes["starts"]),
            "rounds": lambda: rounds_cost(data, scratch, sizes["rounds"], sizes["pairs"]),
            "clients": lambda: many_clients(scratch, 5 if quick else sizes["clients"]),
            "concurrent": lambda: concurrent(data, 4 if quick else sizes["jobs"]),
        }
        for name, part in parts.items():
            if not only or name in only:
                # Import cost grows with contention: every part says how loaded the machine was when it began.
                record("warm.load", part=name, loadavg_1m=os.getloadavg()[0])
                part()
