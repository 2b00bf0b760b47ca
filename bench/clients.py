"""One job with many clients through the launcher pool (issue 23, item 3): wall time, StartTraining, the first
round, and where the memory is: the FL processes' summed PSS at its peak, split per process (the pool's forks
share torch's pages, so PSS, not RSS, is what each one costs), the control plane's own PSS, and the memory the job
added at its peak, read whole (bench/pss_sampler.py says why the PSS peak cannot be).

python -c "from bench import clients; clients.run_clients(100)"; BENCH_PROFILE=DIR adds a py-spy profile of the
control plane while the job runs (bench/profile.py).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import psutil

from bench.profile import sampled
from bench.pss_sampler import PssPeak
from bench.stats import record
from bench.warm import PATIENT, plane, rollup_kib, run_job
from florist_grpc.fl.make_data import write_synthetic


def cpu_seconds(process: psutil.Process, children: bool) -> float:
    """CPU time of `process` itself, or of its children it has reaped (user + system)."""
    times = process.cpu_times()
    return times.children_user + times.children_system if children else times.user + times.system


def run_clients(clients: int, rounds: int = 3) -> dict[str, float]:
    """CPU time beside the wall clock (a shared 2-core machine makes wall time follow the load): the FL processes'
    (the pool's reaped children: every FL process of the job has ended and been reaped when it ends) and the
    control plane's (this process: the plane, and the benchmark's one client reading the job's stream)."""
    with tempfile.TemporaryDirectory() as directory:
        data = write_synthetic(Path(directory) / "data", clients)
        # py-spy (BENCH_PROFILE) starts first: its own memory is not the job's.
        with plane(True, PATIENT) as running, sampled(f"clients-{clients}"), PssPeak() as pss:
            assert running.plane.launcher_pool is not None and running.plane.launcher_pool.pid is not None
            pool, this = psutil.Process(running.plane.launcher_pool.pid), psutil.Process()
            fl_before, plane_before = cpu_seconds(pool, True), cpu_seconds(this, False)
            pool_before = cpu_seconds(pool, False)
            result = run_job(running, data, rounds)
            fl_cpu, plane_cpu = cpu_seconds(pool, True) - fl_before, cpu_seconds(this, False) - plane_before
            pool_cpu = cpu_seconds(pool, False) - pool_before  # its forks
            pool_huge = rollup_kib(pool.pid, "AnonHugePages") >> 10
            pool_anonymous = rollup_kib(pool.pid, "Anonymous") >> 10
    line = {
        **result,
        "fl_cpu_s": fl_cpu,
        "plane_cpu_s": plane_cpu,
        "pool_cpu_s": pool_cpu,
        "pool_huge_mib": float(pool_huge),
        "pss_gib": pss.total / 2**30,
        "processes": float(pss.count),
        "pss_mean_mib": pss.total / max(pss.count, 1) / 2**20,
        "pss_largest_mib": pss.largest / 2**20,
        "uss_mean_mib": pss.uss / max(pss.count, 1) / 2**20,  # private to each process, at the PSS peak
        "plane_pss_mib": pss.plane / 2**20,
        # What the machine's anonymous memory and page tables gained at the job's peak (bench/pss_sampler.py: a
        # whole reading, where a PSS pass over 100 processes is not); the pool's own memory is not in it, but beside it.
        "anon_added_gib": pss.added / 2**30,
        "pool_anon_mib": float(pool_anonymous),
        "loadavg_1m": os.getloadavg()[0],
    }
    record("clients", clients=clients, rounds=rounds, **line)
    return line


def state_changes(clients: int) -> dict[str, float]:
    """The store's cost of a job's client ends, alone: one job of `clients` clients in a fresh SqliteStore, each
    client's state set once (what the follower records as each ends), CPU time per change."""
    from datetime import UTC, datetime

    from florist_grpc.domain.model import Client, ClientState, Job, JobState
    from florist_grpc.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(Path(directory) / "florist.sqlite3")
        now = datetime.now(UTC)
        job = Job(
            id="many",
            model="MLP",
            strategy="FEDAVG",
            optimizer="SGD",
            client_type="FEDAVG",
            server_config={"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1},
            clients=[Client(data_path=f"/data/{i}.npz", uuid=f"{i:032x}") for i in range(clients)],
            create_time=now,
            server_address="127.0.0.1:9000",
        )
        store.create_job(job)
        store.transition("many", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, now)
        began = time.process_time()
        for i in range(clients):
            store.set_client_state("many", i, ClientState.FINISHED)
        per_change = (time.process_time() - began) / clients
        store.close()
    line = {"cpu_per_change_ms": per_change * 1000, "loadavg_1m": os.getloadavg()[0]}
    record("clients.state_changes", clients=clients, **line)
    return line
