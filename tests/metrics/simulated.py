"""Simulated jobs: the real pipeline (Redis, listener, follower, store, hub, gRPC) without Flower processes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from florist_grpc.fl.reporter import RedisReporter
from florist_grpc.jobs.follower import RunningProcess
from florist_grpc.jobs.model import SERVER_SOURCE, JobState
from florist_grpc.proto.florist.v1 import job_pb2
from tests.helpers import PlaneThread, job_message


@dataclass
class SimulatedJob:
    job_id: str
    server: RedisReporter
    clients: list[RedisReporter]

    @property
    def reporters(self) -> dict[str, RedisReporter]:
        return {"server": self.server, **{f"client{i}": c for i, c in enumerate(self.clients)}}


def reporter(plane: PlaneThread, run_uuid: str) -> RedisReporter:
    return RedisReporter(plane.plane.redis_url.removeprefix("redis://").split("/")[0], run_uuid)


def create_running(plane: PlaneThread, n_clients: int = 3, attach: bool = True) -> SimulatedJob:
    """An IN_PROGRESS job whose sources report through real RedisReporters."""
    job = plane.create(job_message([f"/sim/{i}" for i in range(n_clients)]))
    store = plane.plane.store
    event = store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, datetime.now(UTC))
    assert event is not None
    domain = store.get_job(job.id)
    assert domain is not None
    server_uuid, client_uuids = uuid.uuid4().hex, [uuid.uuid4().hex for _ in range(n_clients)]
    simulated = SimulatedJob(job.id, reporter(plane, server_uuid), [reporter(plane, u) for u in client_uuids])
    if attach:
        attach_simulated(plane, simulated)
    return simulated


def attach_simulated(plane: PlaneThread, job: SimulatedJob) -> None:
    domain = plane.plane.store.get_job(job.job_id)
    assert domain is not None
    processes = {SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, job.server.uuid)}
    for i, client in enumerate(job.clients):
        processes[f"client{i}"] = RunningProcess(replace(domain.client_source(i), client_uuid=client.uuid), client.uuid)
    plane.plane.follower.attach(job.job_id, processes, {})


def finish(plane: PlaneThread, job: SimulatedJob, state: JobState = JobState.FINISHED_SUCCESSFULLY) -> None:
    """End the job through the follower, as a process exit would (it reads every source one last time)."""
    plane.plane.follower.end(job.job_id, state).result(30)


def play_rounds(job: SimulatedJob, rounds: int) -> None:
    """FL4Health-shaped reports, with metric names that have spaces, dots and dollars."""
    job.server.report_values(host_type="server", fit_start="t0")
    for c in job.clients:
        c.report_values(host_type="client", initialized="t0")
    for n in range(1, rounds + 1):
        job.server.report_round(n, fit_round_start=f"s{n}")
        for i, c in enumerate(job.clients):
            c.report_round(n, round_start=f"r{n}")
            c.report_round(n, fit_round_losses={"backward": 1 / (n + i)}, fit_round_metrics={"train.acc $": n / 10})
            c.report_round(n, eval_round_metrics={"val - prediction - accuracy": n / 20}, round_end=f"e{n}")
        job.server.report_round(
            n, fit_round_end=f"f{n}", eval_round_metrics_aggregated={"val - loss - aggregated": 1 / n}
        )
    job.server.report_values(fit_end="end")
    for c in job.clients:
        c.report_values(shutdown="bye")


def terminal(state: int) -> bool:
    return state in (
        job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,
        job_pb2.JOB_STATE_FINISHED_WITH_ERROR,
        job_pb2.JOB_STATE_CANCELLED,
    )
