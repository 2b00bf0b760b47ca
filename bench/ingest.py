"""Ingest: reports per second turned into persisted events, end to end, and the listener threads it takes.

A load process writes WAVES rounds of one distinct report to every source of JOBS simulated jobs (4 sources
each), as fast as Redis takes them. Done = every source's persisted report is its last one.

`mongo_batch` (its own benchmark: `python -m bench mongo_batch`) sets MongoStore's batch ingest beside its
per-change path on mongomock, in one run: once at the store (the same report changes into two fresh stores,
alternated) and once end to end (the pipeline above, each path on its own control plane).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mongomock
import redis

from bench.florist_baseline import FloristStyleListeners, FloristStyleStore
from bench.harness import load_run
from bench.stats import record
from florist_grpc.config import Timeouts
from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState, JsonObject, MetricsEvent, Source, SourceKind
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.store.base import JobStore, ReportChange
from florist_grpc.store.mongo import MongoStore
from florist_grpc.testing import simulation
from florist_grpc.testing.mongomock_compat import patch_mongomock
from florist_grpc.testing.plane import embedded_plane

GOAL_REPORTS_PER_S = 5000
SOURCES_PER_JOB = 4
WAVES = 3
BASELINE_SETUP_SECONDS = 60


def florist_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("florist-"))


def _wait_done(done: Callable[[], bool], timeout: float, every: float) -> float:
    deadline = time.time() + timeout
    while not done():
        if time.time() > deadline:
            return float("nan")
        time.sleep(every)  # polling the store for completion; `every` bounds the timing error
    return time.time()


def persisted(store: JobStore, simulated: list[simulation.SimulatedJob]) -> int:
    """Events persisted so far across the simulated jobs."""
    return sum(job.last_sequence for s in simulated if (job := store.get_job(s.job_id)) is not None)


def ingest(jobs: int, backend: str) -> None:
    """`backend`: sqlite, mongomock (batch ingest) or mongomock-per-change."""
    patch_mongomock()
    store: JobStore | None = None
    if backend.startswith("mongomock"):
        store = MongoStore(mongomock.MongoClient(), "bench", batch_ingest=backend == "mongomock")
    with embedded_plane(store, launcher_pool=False) as running, tempfile.TemporaryDirectory() as scratch:
        plane = running.plane
        simulated = [simulation.create_running(plane, SOURCES_PER_JOB - 1) for _ in range(jobs)]
        uuids = [r.uuid for job in simulated for r in job.reporters.values()]
        uuids_file = Path(scratch) / "uuids.json"
        uuids_file.write_text(json.dumps(uuids))
        threads_idle = florist_threads()
        before = persisted(plane.store, simulated)
        sampler_threads: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                sampler_threads.append(florist_threads())

        sampler = threading.Thread(target=sample)
        sampler.start()
        if backend == "sqlite":
            database = plane.settings.data_dir.resolve() / "florist.sqlite3"
            reader = sqlite3.connect(database)

            def done() -> bool:
                tables = {name for (name,) in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "report_members" in tables:  # a row per member (after issue 23's fourth pass)
                    query = "SELECT COUNT(*) FROM report_members WHERE member = 'wave' AND depth = 0 AND body = ?"
                    row = reader.execute(query, (json.dumps(WAVES - 1),)).fetchone()
                else:  # a revision that kept reports whole (bench.compare runs this code on both sides)
                    query = "SELECT COUNT(*) FROM reports WHERE json_extract(body, '$.wave') = ?"
                    row = reader.execute(query, (WAVES - 1,)).fetchone()
                return bool(row[0] == len(uuids))
        else:
            assert isinstance(store, MongoStore)
            collection = store._jobs

            def done() -> bool:
                last = 0
                for row in collection.find({}, {"reports": 1}):
                    last += sum(1 for r in row.get("reports", {}).values() if r.get("wave") == WAVES - 1)
                return last == len(uuids)

        load = load_run("waves", plane.redis_url, str(WAVES), str(uuids_file))
        # mongomock copies every document it reads: check it rarely, so the check does not slow what it measures.
        finished = _wait_done(done, 300, 0.005 if backend == "sqlite" else 1.0)
        sampling.set()
        sampler.join()
        after = persisted(plane.store, simulated)
        elapsed = finished - load["first_report"]
        reports = len(uuids) * WAVES
        record(
            "ingest",
            impl="florist-grpc",
            store=backend,
            jobs=jobs,
            reports=reports,
            seconds=elapsed,
            reports_per_s=reports / elapsed,
            events=after - before,
            events_per_s=(after - before) / elapsed,
            listener_threads_idle=threads_idle,
            listener_threads_busy=max(sampler_threads, default=threads_idle),
        )
        for job in simulated:
            simulation.finish(plane, job)


def ingest_baseline(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        embedded = EmbeddedRedis(Path(scratch), Timeouts())
        url = embedded.start()
        store = FloristStyleStore(Path(scratch) / "baseline.sqlite3")
        listeners = FloristStyleListeners(url, store)
        sources: list[tuple[str, str, str]] = []
        for _ in range(jobs):
            job_id = uuid.uuid4().hex
            names = ["server"] + [f"client{i}" for i in range(SOURCES_PER_JOB - 1)]
            store.create(job_id, names)
            sources += [(job_id, name, uuid.uuid4().hex) for name in names]
        threads_before = threading.active_count()
        setup_deadline = time.time() + BASELINE_SETUP_SECONDS
        for followed, (job_id, name, run_uuid) in enumerate(sources):
            if time.time() > setup_deadline:
                # A thread and a connection per source does not scale this far: report how far it got.
                record(
                    "ingest",
                    impl="florist-style",
                    store="sqlite",
                    jobs=jobs,
                    reports=len(sources) * WAVES,
                    did_not_finish=f"{followed} of {len(sources)} listeners subscribed in {BASELINE_SETUP_SECONDS}s",
                    listener_threads_busy=threading.active_count() - threads_before,
                )
                listeners.stop()
                embedded.stop()
                return
            listeners.follow(job_id, name, run_uuid)
        uuids_file = Path(scratch) / "uuids.json"
        uuids_file.write_text(json.dumps([s[2] for s in sources]))
        reader = sqlite3.connect(Path(scratch) / "baseline.sqlite3")

        def done() -> bool:
            count = 0
            for (text,) in reader.execute("SELECT doc FROM jobs"):
                count += sum(1 for r in json.loads(text)["reports"].values() if r.get("wave") == WAVES - 1)
            return count == len(sources)

        load = load_run("waves", url, str(WAVES), str(uuids_file))
        finished = _wait_done(done, 300, 0.05)
        elapsed = finished - load["first_report"]
        reports = len(sources) * WAVES
        record(
            "ingest",
            impl="florist-style",
            store="sqlite",
            jobs=jobs,
            reports=reports,
            seconds=elapsed,
            reports_per_s=reports / elapsed,
            listener_threads_busy=threading.active_count() - threads_before,
            redis_connections=len(redis.Redis.from_url(embedded.admin_url).client_list()),
            errors=len(listeners.errors),
        )
        listeners.stop()
        embedded.stop()


def run(quick: bool = False) -> None:
    for jobs in (1, 100) if quick else (1, 100, 1000):
        ingest(jobs, "sqlite")
        ingest_baseline(jobs)
    ingest(100 if quick else 1000, "mongomock")


def _mongo_store(jobs: int, batch_ingest: bool) -> MongoStore:
    """A fresh mongomock store with `jobs` running jobs of SOURCES_PER_JOB sources each."""
    store = MongoStore(mongomock.MongoClient(), "bench", batch_ingest=batch_ingest)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for j in range(jobs):
        clients = [Client(data_path=f"/data/{i}") for i in range(SOURCES_PER_JOB - 1)]
        job = Job(
            id=f"job{j}",
            model="MLP",
            strategy="FEDAVG",
            optimizer="SGD",
            client_type="FEDAVG",
            server_config={"n_server_rounds": WAVES},
            clients=clients,
            create_time=t0,
        )
        store.create_job(job)
        store.transition(job.id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, t0)
    return store


def _report_waves(jobs: int) -> list[list[ReportChange]]:
    """WAVES batches, each one new round for every source of every job (what the follower hands the store)."""
    sources = [SERVER_SOURCE, *(Source(SourceKind.CLIENT, i, f"u{i}") for i in range(SOURCES_PER_JOB - 1))]
    previous: dict[tuple[int, int], JsonObject] = {}
    waves = []
    for w in range(WAVES):
        wave = []
        for j in range(jobs):
            for s, source in enumerate(sources):
                before = previous.get((j, s), {})
                after = {**before, "wave": w, "rounds": {**before.get("rounds", {}), str(w + 1): {"loss": 1 / (w + 1)}}}
                wave.append(ReportChange(f"job{j}", source, before, after, datetime.now(UTC)))
                previous[(j, s)] = after
        waves.append(wave)
    return waves


def _count_round_trips(store: MongoStore) -> dict[str, int]:
    """Count the store's calls to MongoDB (each one round trip) and the job-document updates among them; not the
    calls mongomock makes to itself (its find_one calls find)."""
    counts = {"round_trips": 0, "job_updates": 0, "depth": 0}
    for collection in (store._jobs, store._events):
        for name in ("find", "find_one", "insert_one", "insert_many", "update_one", "bulk_write", "count_documents"):
            original = getattr(collection, name)

            def counted(*args: Any, _original: Callable[..., Any] = original, _name: str = name, **kwargs: Any) -> Any:
                if not counts["depth"]:
                    counts["round_trips"] += 1
                    counts["job_updates"] += len(args[0]) if _name == "bulk_write" else int(_name == "update_one")
                counts["depth"] += 1
                try:
                    return _original(*args, **kwargs)
                finally:
                    counts["depth"] -= 1

            setattr(collection, name, counted)
    return counts


def _store_run(jobs: int, waves: list[list[ReportChange]], batch_ingest: bool) -> tuple[float, dict[str, int]]:
    """Seconds to append every wave, one append_report_changes call per wave (the store decides how), and the
    round trips it took."""
    store = _mongo_store(jobs, batch_ingest)
    counts = _count_round_trips(store)
    began = time.perf_counter()
    for wave in waves:
        results = store.append_report_changes(wave)
        assert all(isinstance(r, MetricsEvent) for r in results)
    elapsed = time.perf_counter() - began
    store.close()
    return elapsed, counts


def mongo_batch(quick: bool = False) -> None:
    """MongoStore's batch ingest against its per-change path, on mongomock, side by side in one run."""
    patch_mongomock()
    # mongomock checks a unique index by scanning the whole collection on every insert, the same for both paths:
    # time grows with the square of the events, so the sizes stay small.
    sizes, repeats = ((100,), 1) if quick else ((100, 300), 3)
    for jobs in sizes:
        waves = _report_waves(jobs)
        changes = sum(len(w) for w in waves)
        timings: dict[bool, list[float]] = {True: [], False: []}
        counts: dict[bool, dict[str, int]] = {}
        for _ in range(repeats):  # alternated, so drift in machine load hits both paths alike
            for batch_ingest in (False, True):
                seconds, counts[batch_ingest] = _store_run(jobs, waves, batch_ingest)
                timings[batch_ingest].append(seconds)
        per_change, batch = statistics.median(timings[False]), statistics.median(timings[True])
        record(
            "mongo_batch",
            level="store",
            jobs=jobs,
            reports=changes,
            repeats=repeats,
            per_change_s=[round(t, 2) for t in timings[False]],
            batch_s=[round(t, 2) for t in timings[True]],
            per_change_reports_per_s=changes / per_change,
            batch_reports_per_s=changes / batch,
            ratio=per_change / batch,
            per_change_round_trips=counts[False]["round_trips"],
            batch_round_trips=counts[True]["round_trips"],
            per_change_job_updates=counts[False]["job_updates"],
            batch_job_updates=counts[True]["job_updates"],
        )
    # End to end the two paths coalesce reports differently (a faster store drains larger batches), so the events
    # differ: each run records its own.
    for _ in range(repeats):
        for backend in ("mongomock-per-change", "mongomock"):
            ingest(sizes[-1], backend)
