"""The control plane's CPU per ingested report change (issue 23, item 1): Redis notification -> read -> diff ->
persist -> fan-out to one StreamMetrics subscriber.

A simulated 2-client job (the real pipeline, no Flower process) is fed by a load process that writes the reports
FL4Health's reporters write for ROUNDS rounds (bench/load.py `rounds`, `simulation.play_fl4health_rounds`), one
every PAUSE seconds: about a small model's round time per round, as in `bench warm rounds`. One subscriber in its
own process reads the job's stream. The control plane runs in this process (`embedded_plane`), Redis, the load and
the subscriber in theirs; this process's CPU time from the first report until the last one is persisted, less
its main thread's (which waits for the load and polls the store), is the control plane's, split by thread
(listener, follower, event loop, gRPC's own threads).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil

from bench.harness import load_process, load_run, read_json_line
from bench.profile import sampled
from bench.stats import record
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import embedded_plane, wait_for

PAUSE_SECONDS = 0.003  # 8 reports a round: ~25 ms per round, a small model's round on this machine


def thread_names() -> dict[int, str]:
    """Every thread of this process by native id: Python's names, else the kernel's (gRPC core's threads)."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        if tid not in names:
            names[tid] = (task / "comm").read_text().strip()
    return names


def thread_cpu() -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def _group(name: str) -> str:
    """A thread's part of the pipeline, by its name."""
    for prefix, group in (
        ("florist-report-listener", "listener"),
        ("florist-job-follower", "follower"),
        ("control-plane-loop", "event loop"),
        ("grpc", "grpc core"),
        ("asyncio_", "to_thread pool"),
    ):
        if name.startswith(prefix):
            return group
    return "other"


def change_cost(rounds: int = 50, pause: float = PAUSE_SECONDS) -> dict[str, float]:
    with embedded_plane(launcher_pool=False) as running:
        plane = running.plane
        job = simulation.create_running(plane, n_clients=2)
        subscriber = load_process("subscribe", running.address, job.job_id, "1")
        assert subscriber.stdout is not None and subscriber.stdout.readline().strip() == "ready"
        before_job = plane.store.get_job(job.job_id)
        assert before_job is not None
        cpu_before, process_before, main_before = thread_cpu(), time.process_time(), time.thread_time()
        uuids = [job.server.uuid, *(c.uuid for c in job.clients)]
        with sampled(f"change_cost-{rounds}"):
            loaded = load_run("rounds", plane.redis_url, str(rounds), str(pause), *uuids)

        def persisted_all() -> bool:
            stored = plane.store.get_job(job.job_id)
            return (
                stored is not None
                and all("shutdown" in c.metrics for c in stored.clients)
                and ("shutdown" in stored.server_metrics)
            )

        wait_for(persisted_all, 60, "the last reports persisted")
        # This thread only waits for the load and polls the store: its CPU is not the control plane's.
        process_cpu = time.process_time() - process_before - (time.thread_time() - main_before)
        cpu_after, names = thread_cpu(), thread_names()
        after_job = plane.store.get_job(job.job_id)
        assert after_job is not None
        simulation.finish(plane, job)
        result = read_json_line(subscriber)
        subscriber.wait(60)
    changes = after_job.last_sequence - before_job.last_sequence
    by_group: dict[str, float] = {}
    for tid, seconds in cpu_after.items():
        if tid == threading.main_thread().native_id:
            continue
        group = _group(names.get(tid, "?"))
        by_group[group] = by_group.get(group, 0.0) + seconds - cpu_before.get(tid, 0.0)
    line = {
        "rounds": rounds,
        "reports": loaded["reports"],
        "changes": changes,
        "load_seconds": loaded["seconds"],
        "cpu_ms": process_cpu * 1e3,
        "cpu_us_per_change": process_cpu / changes * 1e6,
        "cpu_ms_per_round": process_cpu / rounds * 1e3,
        "events_per_stream": result["events_per_stream"],
        "gaps": result["gaps"],
        "loadavg_1m": os.getloadavg()[0],
    }
    record("change_cost", **line, **{f"cpu_ms_{g.replace(' ', '_')}": s * 1e3 for g, s in sorted(by_group.items())})
    return line


def run(quick: bool = False) -> None:
    for rounds in (10,) if quick else (50, 200):
        for _ in range(1 if quick else 3):
            change_cost(rounds)


if __name__ == "__main__":
    print(json.dumps(change_cost()))
