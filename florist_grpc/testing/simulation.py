"""Simulated jobs: the real pipeline (Redis, listener, follower, store, hub, gRPC) fed by real reporters, with
no Flower process behind them. Used by the tests and the benchmarks to load the pipeline with hundreds of jobs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlparse

from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState
from florist_grpc.domain.tracking import TrackingConfig
from florist_grpc.fl.reporter import RedisReporter
from florist_grpc.jobs.run import RunningProcess
from florist_grpc.net import redis_address_of
from florist_grpc.server import ControlPlane


@dataclass
class SimulatedJob:
    job_id: str
    server: RedisReporter
    clients: list[RedisReporter]

    @property
    def reporters(self) -> dict[str, RedisReporter]:
        return {"server": self.server, **{f"client{i}": c for i, c in enumerate(self.clients)}}


def reporter_for(plane: ControlPlane, run_uuid: str) -> RedisReporter:
    # The control plane's own credentials: simulated sources are not FL processes with users of their own.
    url = urlparse(plane.redis_url)
    return RedisReporter(
        redis_address_of(plane.redis_url), run_uuid, unquote(url.username or ""), unquote(url.password or "")
    )


def stored_job(data_paths: list[str], rounds: int = 3, **fields: Any) -> Job:
    """A job as a store holds it: the built-in MLP with FedAvg and SGD, a client per data path, created now;
    `fields` set the rest (create_time, project, server_address ...)."""
    fields.setdefault("create_time", datetime.now(UTC))
    return Job(
        id=uuid.uuid4().hex,
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config={"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1},
        clients=[Client(data_path=path) for path in data_paths],
        **fields,
    )


def create_running(
    plane: ControlPlane, n_clients: int = 3, attach: bool = True, tracking: TrackingConfig | None = None
) -> SimulatedJob:
    """An IN_PROGRESS job whose sources report through real RedisReporters. Call from a non-loop thread."""
    now = datetime.now(UTC)
    paths = [f"/simulated/{i}" for i in range(n_clients)]
    job = stored_job(paths, create_time=now, server_address="127.0.0.1:1", tracking=tracking or TrackingConfig())
    plane.store.create_job(job)
    event = plane.store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, now)
    assert event is not None
    plane.hub.publish_threadsafe([event])
    simulated = SimulatedJob(
        job.id, reporter_for(plane, uuid.uuid4().hex), [reporter_for(plane, uuid.uuid4().hex) for _ in range(n_clients)]
    )
    if attach:
        attach_simulated(plane, simulated)
    return simulated


def attach_simulated(plane: ControlPlane, job: SimulatedJob) -> None:
    """Follow the job's sources as StartTraining would (subscribe, then reconcile)."""
    domain = plane.store.get_job(job.job_id)
    assert domain is not None
    processes = {SERVER_SOURCE.key: RunningProcess(SERVER_SOURCE, job.server.uuid)}
    for i, client in enumerate(job.clients):
        source = replace(domain.client_source(i), client_uuid=client.uuid)
        processes[source.key] = RunningProcess(source, client.uuid)
    plane.follower.attach(job.job_id, processes, {})


def finish(plane: ControlPlane, job: SimulatedJob, state: JobState = JobState.FINISHED_SUCCESSFULLY) -> None:
    """End the job through the follower, as process exits would (it reads every source one last time)."""
    plane.follower.end(job.job_id, state).result(30)


def play_rounds(job: SimulatedJob, rounds: int) -> None:
    """Reports with the round keys and nesting of FLorist's layout (domain/report_layout.py), as our reporter
    writes them, with metric names that have spaces, dots and dollars. Not byte for byte what FL4Health writes:
    tests/metrics/test_fl4health_layout.py holds FL4Health's own documents."""
    job.server.report_values(host_type="server", fit_start="2026-01-01 00:00:00.000001")
    for c in job.clients:
        c.report_values(host_type="client", initialized="2026-01-01 00:00:00.000002")
    for n in range(1, rounds + 1):
        job.server.report_round(n, fit_round_start=f"s{n}")
        for i, c in enumerate(job.clients):
            c.report_round(
                n,
                fit_round_metrics={"train - prediction - accuracy": n / 10, "train.acc $": n / 10},
                fit_round_losses={"backward": 1 / (n + i)},
                round=n,
                round_start=f"r{n}",
                round_end=f"re{n}",
                fit_round_start=f"fs{n}",
                fit_round_time_elapsed=1,
                fit_round_end=f"fe{n}",
                fit_step=10 * n,
                fit_epoch=n,
            )
        job.server.report_round(
            n,
            fit_round_start=f"s{n}",
            fit_round_end=f"f{n}",
            fit_round_time_elapsed=1,
            fit_round_metrics={"train - prediction - accuracy": n / 10},
        )
        for c in job.clients:
            c.report_round(
                n,
                eval_round_metrics={"val - prediction - accuracy": n / 20},
                eval_round_loss=1 / n,
                eval_round_start=f"es{n}",
                eval_round_time_elapsed=0,
                eval_round_end=f"ee{n}",
                fit_step=10 * n,
                fit_epoch=n,
                round=n,
            )
        job.server.report_round(
            n,
            **{"val - loss - aggregated": 1 / n},
            round=n,
            eval_round_start=f"es{n}",
            eval_round_end=f"ee{n}",
            eval_round_time_elapsed=0,
            fit_epoch=n,
        )
        job.server.report_round(n, eval_round_metrics_aggregated={"val - prediction - accuracy": n / 20})
    job.server.report_values(fit_elapsed_time=rounds, fit_end="end", num_rounds=rounds, host_type="server")
    for c in job.clients:
        c.report_values(shutdown="bye")


def _now(n: int, step: int) -> str:
    """A timestamp as FL4Health writes them (`str(datetime.now())`), increasing with round and step."""
    return f"2026-01-01 00:{n:02d}:{step:02d}.000001"


def play_fl4health_rounds(job: SimulatedJob, rounds: int, client_metrics: bool = True) -> None:
    """The documents FL4Health's BasicClient and FlServer write through FLorist's RedisMetricsReporter, in their
    call order: only the keys they write, one report per call (a report within an epoch or step is dropped by
    that reporter). The server has no training loss (its clients report theirs in `fit_round_losses`); with
    `client_metrics` False the clients compute no metrics, and the server writes no aggregated metrics at all.

    Client i's round n: training loss 1 / (n + i), validation loss 1 / n, accuracy n / 20 (with metrics)."""
    accuracy = "val - prediction - accuracy"
    job.server.report_values(fit_start=_now(0, 0), host_type="server")  # FlServer.fit
    for n in range(1, rounds + 1):
        for i, c in enumerate(job.clients):  # BasicClient.fit: set up on the first call, one report at its end
            if n == 1:
                c.report_values(host_type="client", initialized=_now(n, 1))
            c.report_round(
                n,
                fit_round_metrics={"train - prediction - accuracy": n / 10} if client_metrics else {},
                fit_round_losses={"backward": 1 / (n + i)},
                round=n,
                round_start=_now(n, 1),
                round_end=_now(n, 3),
                fit_round_start=_now(n, 2),
                fit_round_time_elapsed=1,
                fit_round_end=_now(n, 3),
                fit_step=10 * n,
                fit_epoch=n,
            )
        # FlServer.fit_round: its timing, then the aggregated fit metrics in a report of their own.
        job.server.report_round(n, fit_round_start=_now(n, 0), fit_round_end=_now(n, 4), fit_round_time_elapsed=4)
        job.server.report_round(
            n, fit_round_metrics={"train - prediction - accuracy": n / 10} if client_metrics else {}
        )
        for c in job.clients:  # BasicClient.evaluate
            c.report_round(
                n,
                eval_round_metrics={accuracy: n / 20} if client_metrics else {},
                eval_round_loss=1 / n,
                eval_round_start=_now(n, 5),
                eval_round_time_elapsed=0,
                eval_round_end=_now(n, 5),
                fit_step=10 * n,
                fit_epoch=n,
                round=n,
            )
        # FlServer.evaluate_round: the loss with the timing, then the metrics only if there are any.
        job.server.report_round(
            n,
            **{"val - loss - aggregated": 1 / n},
            round=n,
            eval_round_start=_now(n, 5),
            eval_round_end=_now(n, 6),
            eval_round_time_elapsed=1,
            fit_epoch=n,
        )
        if client_metrics:
            job.server.report_round(n, eval_round_metrics_aggregated={accuracy: n / 20})
    job.server.report_values(
        fit_elapsed_time=rounds * 6, fit_end=_now(rounds, 7), num_rounds=rounds, host_type="server"
    )
    job.server.report_values(shutdown=_now(rounds, 8))  # FlServer.shutdown, after Flower's server returns
    for c in job.clients:  # BasicClient.shutdown, after Flower's client returns
        c.report_values(shutdown=_now(rounds, 8))
