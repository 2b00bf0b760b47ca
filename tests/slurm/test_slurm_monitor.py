"""The Slurm monitor against a real cluster: one scontrol call per pass for every job, at most once a second; exits
and scancels as Slurm reports them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from florist_grpc.launch.slurm.commands import parse_sbatch
from florist_grpc.launch.slurm.monitor import SlurmMonitor
from florist_grpc.testing.slurm_cluster import SlurmCluster
from tests.helpers import wait_for


@pytest.fixture
def monitor(slurm: SlurmCluster) -> Iterator[SlurmMonitor]:
    running = SlurmMonitor()
    yield running
    running.close()


def submit(slurm: SlurmCluster, command: str) -> str:
    return parse_sbatch(slurm.run("sbatch", "--parsable", "--no-requeue", "--output=/dev/null", "--wrap", command))


def test_every_job_is_polled_in_one_call_at_most_once_a_second(slurm: SlurmCluster, monitor: SlurmMonitor) -> None:
    jobs = [submit(slurm, "exec sleep 60") for _ in range(3)]
    started = time.monotonic()
    for job in jobs:
        monitor.watch(job)
    wait_for(lambda: monitor.polls >= 4, 10, "four passes")
    elapsed = time.monotonic() - started
    assert elapsed >= 3.0 - 0.1  # 4 passes, one second apart: one call per pass whatever the number of jobs
    assert all(monitor.job(j) is not None and monitor.exit_of(j) is None for j in jobs)
    monitor.cancel(jobs[0])
    status = monitor.wait_exit(jobs[0], 15)
    assert status is not None and status.code is not None and status.code < 0
    assert status.describe().startswith(f"was cancelled in Slurm (Slurm job {jobs[0]} CANCELLED")
    assert monitor.exit_of(jobs[1]) is None
    for job in jobs[1:]:
        monitor.cancel(job, kill=True)
    assert all(monitor.wait_exit(j, 15) is not None for j in jobs[1:])
    assert slurm.squeue() == []


def test_a_failed_job_ends_with_its_exit_code(slurm: SlurmCluster, monitor: SlurmMonitor) -> None:
    job = submit(slurm, "exit 3")
    monitor.watch(job)
    status = monitor.wait_exit(job, 15)
    assert status is not None and status.code == 3 and f"Slurm job {job} FAILED" in status.describe()
    done = submit(slurm, "true")
    monitor.watch(done)
    clean = monitor.wait_exit(done, 15)
    assert clean is not None and clean.clean
