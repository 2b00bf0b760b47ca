"""MongoStore batch ingest against the per-change path, on mongomock, side by side in one run.

The same report changes (JOBS jobs x SOURCES sources x WAVES waves of one new round each) go into two fresh stores:
one `append_report_changes` call per wave with every change of the wave (the batch path: one find, one insert_many,
one bulk_write), against one call per change (what the per-change path did: a find, an insert and an update for
every change). Alternated REPEATS times; the medians and their ratio are printed.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import mongomock

from bench.stats import record
from florist_grpc.domain.model import (
    SERVER_SOURCE,
    Client,
    Job,
    JobState,
    JsonObject,
    Source,
    SourceKind,
)
from florist_grpc.store.base import ReportChange
from florist_grpc.store.mongo import MongoStore
from florist_grpc.testing.mongomock_compat import patch_mongomock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _store(jobs: int, sources: int) -> MongoStore:
    store = MongoStore(mongomock.MongoClient(), "bench")
    for j in range(jobs):
        job = Job(
            id=f"job{j}",
            model="MLP",
            strategy="FEDAVG",
            optimizer="SGD",
            client_type="FEDAVG",
            server_config={"n_server_rounds": 3},
            clients=[Client(data_path=f"/data/{i}") for i in range(sources - 1)],
            create_time=T0,
        )
        store.create_job(job)
        store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    return store


def _waves(jobs: int, sources: int, waves: int) -> list[list[ReportChange]]:
    keys: list[Source] = [SERVER_SOURCE, *(Source(SourceKind.CLIENT, i, f"u{i}") for i in range(sources - 1))]
    previous: dict[tuple[int, int], JsonObject] = {}
    out = []
    for w in range(waves):
        wave = []
        for j in range(jobs):
            for s, source in enumerate(keys):
                before = previous.get((j, s), {})
                after = {**before, "rounds": {**before.get("rounds", {}), str(w + 1): {"loss": 1.0 / (w + 1)}}}
                wave.append(ReportChange(f"job{j}", source, before, after, T0))
                previous[(j, s)] = after
        out.append(wave)
    return out


def _ingest(jobs: int, sources: int, waves: list[list[ReportChange]], batched: bool) -> float:
    store = _store(jobs, sources)
    began = time.perf_counter()
    for wave in waves:
        if batched:
            events = store.append_report_changes(wave)
        else:
            events = [e for change in wave for e in store.append_report_changes([change])]
        assert all(e is not None for e in events)
    elapsed = time.perf_counter() - began
    store.close()
    return elapsed


def run(quick: bool = False) -> None:
    patch_mongomock()
    jobs, sources, n_waves, repeats = (20, 4, 3, 1) if quick else (100, 4, 3, 3)
    waves = _waves(jobs, sources, n_waves)
    changes = jobs * sources * n_waves
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for batched in (False, True):
            timings[batched].append(_ingest(jobs, sources, waves, batched))
    per_change, batch = statistics.median(timings[False]), statistics.median(timings[True])
    record(
        "mongo_batch",
        jobs=jobs,
        changes=changes,
        per_change_s=per_change,
        batch_s=batch,
        per_change_rate=changes / per_change,
        batch_rate=changes / batch,
        speedup=per_change / batch,
    )
