"""The listener machinery is fixed in size: the same threads and one pub/sub connection for 1 or 200 jobs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import redis

from florist_grpc.fl.reporter import RedisReporter
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import SimulatedJob, create_running
from tests.helpers import wait_for


def florist_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("florist-"))


def pubsub_connections(plane: ControlPlaneThread) -> int:
    embedded = plane.plane.embedded_redis
    assert embedded is not None
    client = redis.Redis.from_url(embedded.admin_url)  # the user manager may list clients; the control user not
    try:
        return sum(1 for c in client.client_list() if int(c.get("sub", 0)) > 0 or int(c.get("psub", 0)) > 0)
    finally:
        client.close()


def report_everything(jobs: list[SimulatedJob]) -> None:
    reporters: list[RedisReporter] = [r for job in jobs for r in job.reporters.values()]

    def report(r: RedisReporter) -> None:
        for n in range(1, 4):
            r.report_round(n, round_start=f"r{n}", metric={"val - loss": 1 / n})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(report, reporters))


def persisted_rounds(plane: ControlPlaneThread, job: SimulatedJob) -> bool:
    stored = plane.plane.store.get_job(job.job_id)
    assert stored is not None
    reports = [stored.server_metrics, *(c.metrics for c in stored.clients)]
    return all(len(r.get("rounds", {})) == 3 for r in reports)


def test_200_jobs_with_3_clients_use_the_threads_and_pubsub_connection_of_one(plane: ControlPlaneThread) -> None:
    one = [create_running(plane.plane, n_clients=3)]
    report_everything(one)
    wait_for(lambda: persisted_rounds(plane, one[0]), 20, "one job's reports")
    threads_for_one = florist_threads()
    # The launcher pool's reader is one per control plane too, whatever the number of jobs.
    assert threads_for_one == [
        "florist-job-follower",
        "florist-launcher-pool",
        "florist-process-watcher",
        "florist-report-listener",
    ]
    assert pubsub_connections(plane) == 1

    many = [create_running(plane.plane, n_clients=3) for _ in range(200)]
    report_everything(many)
    assert florist_threads() == threads_for_one  # while 800 sources report at once
    wait_for(lambda: all(persisted_rounds(plane, job) for job in many), 120, "every job's reports")
    assert florist_threads() == threads_for_one
    assert pubsub_connections(plane) == 1
    # Every event of every job is numbered without gaps.
    for job in many[:20]:
        sequences = [e.sequence for e in plane.plane.store.read_events(job.job_id, 0)]
        assert sequences == list(range(1, len(sequences) + 1))
