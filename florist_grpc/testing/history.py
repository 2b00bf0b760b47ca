"""A finished job with a long event history, written straight to a store: what replays to many readers are
measured and tested on (a 400-round job holds ~1,400 events) without running 400 rounds through Redis.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState, JsonObject, Source, SourceKind
from florist_grpc.store.base import JobStore, ReportChange

# One round as FL4Health's reporters write it: the server's fit, each client's fit and eval, the server's eval.
_CLIENTS = 2


def _round_reports(n: int) -> list[tuple[str, JsonObject]]:
    server_fit = {"fit_round_start": f"s{n}", "fit_round_end": f"f{n}", "fit_round_time_elapsed": 1.5}
    server_eval = {
        "val - loss - aggregated": 1 / n,
        "eval_round_metrics_aggregated": {"val - prediction - accuracy": n},
    }
    out: list[tuple[str, JsonObject]] = [("server", server_fit)]
    for i in range(_CLIENTS):
        out.append(
            (
                f"client{i}",
                {
                    "round": n,
                    "fit_round_losses": {"backward": 1 / (n + i)},
                    "fit_round_metrics": {"train - prediction - accuracy": n / 1000},
                    "eval_round_loss": 1 / n,
                    "eval_round_metrics": {"val - prediction - accuracy": n / 1000},
                    "fit_step": 10 * n,
                },
            )
        )
    out.append(("server", server_eval))
    return out


def create_finished(store: JobStore, events: int, job_id: str = "") -> str:
    """A FINISHED_SUCCESSFULLY job of exactly `events` events (>= 2: its start, its report changes, its end)."""
    if events < 2:
        raise ValueError("a finished job has at least its start and end events")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    job_id = job_id or uuid.uuid4().hex
    client_uuids = [uuid.uuid4().hex for _ in range(_CLIENTS)]
    job = Job(
        id=job_id,
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config={"n_server_rounds": 400, "batch_size": 32, "local_epochs": 1},
        clients=[Client(data_path=f"/simulated/{i}") for i in range(_CLIENTS)],
        create_time=now,
        server_address="127.0.0.1:1",
    )
    store.create_job(job)
    store.transition(job_id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, now)
    sources = {"server": SERVER_SOURCE}
    sources.update({f"client{i}": Source(SourceKind.CLIENT, i, u) for i, u in enumerate(client_uuids)})
    reports: dict[str, JsonObject] = {key: {} for key in sources}
    changes: list[ReportChange] = []
    n = 0
    while len(changes) < events - 2:
        n += 1
        for key, values in _round_reports(n):
            previous = reports[key]
            rounds = dict(previous.get("rounds", {}))
            rounds[str(n)] = {**rounds.get(str(n), {}), **values}
            reports[key] = {**previous, "rounds": rounds}
            time = now + timedelta(seconds=len(changes))
            changes.append(ReportChange(job_id, sources[key], previous, reports[key], time))
    for start in range(0, events - 2, 500):
        store.append_report_changes(changes[start : min(start + 500, events - 2)])
    store.transition(job_id, {JobState.IN_PROGRESS}, JobState.FINISHED_SUCCESSFULLY, now + timedelta(hours=1))
    return job_id
