"""The shared platform (issue 20): listing a large store, the queue, and watchers, measured side by side in one run.

- listing: 10,000 jobs stored in SQLite. ListJobs pages of 100 (every page, walked with page tokens) and GetJob of
  random jobs, p50/p99; WatchJobs replaying the whole changes log (from revision 1: 0 means "from now") until it
  is live, and the latency of live changes after it.
- queue: 100 real jobs under `serve --max-running-jobs 2`, across a SIGKILL of serve (bench/queue_restart.py).
- watchers: 100 WatchJobs subscribers (one other process) while 20 simulated jobs run 10 rounds each, a round every
  0.2 s per job (and again as fast as Redis takes the reports): from the commit of a change (the store's change
  feed, in the control plane) to its arrival at each subscriber, p50/p99.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from bench import queue_restart
from bench.harness import read_json_line
from bench.stats import percentile, record, summary
from florist_grpc.domain.model import Job, JobChange
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import embedded_plane


def bench_job(i: int, at: datetime) -> Job:
    return simulation.stored_job(
        [f"/data/{i}/{c}.pt" for c in range(2)],
        create_time=at + timedelta(milliseconds=i),
        server_address="127.0.0.1:1",
        project=f"team-{i % 10}",
        owner="bench",
    )


def ms(seconds: float) -> float:
    return seconds * 1000


def listing(quick: bool) -> None:
    count = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="florist-bench-listing-") as directory:
        store = SqliteStore(Path(directory) / "jobs.sqlite3")
        began, at = time.monotonic(), datetime(2026, 1, 1, tzinfo=UTC)
        ids = [store.create_job(bench_job(i, at)).id for i in range(count)]
        record("listing", jobs=count, store_seconds=time.monotonic() - began)
        with embedded_plane(store=store, launcher_pool=False) as running:
            stub = pb_grpc.JobServiceStub(running.channel)
            pages, token = [], ""
            while True:
                began = time.monotonic()
                page = stub.ListJobs(pb.ListJobsRequest(page_size=100, page_token=token), timeout=30)
                pages.append(ms(time.monotonic() - began))
                if not (token := page.next_page_token):
                    break
            gets = []
            for job_id in random.Random(0).sample(ids, min(1000, count)):
                began = time.monotonic()
                stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30)
                gets.append(ms(time.monotonic() - began))
            for name, values in (("list_page_100", pages), ("get_job", gets)):
                stats = summary(values)
                record("listing", call=name, calls=len(values), p50_ms=stats["p50"], p99_ms=stats["p99"])
            replay_to_live(running.address, store, count)


def replay_to_live(address: str, store: SqliteStore, count: int) -> None:
    """Replay the whole log, then the latency of live changes once caught up."""
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.JobServiceStub(channel)
    current = store.current_revision()
    began = time.monotonic()
    stream = stub.WatchJobs(pb.WatchJobsRequest(after_revision=1), timeout=600)
    replayed, caught_up = 0, 0.0
    committed: dict[int, int] = {}

    def note(change: JobChange) -> None:
        committed.setdefault(change.revision, time.time_ns())

    store.on_change(note)
    live: list[float] = []
    writer: threading.Thread | None = None

    def write_live() -> None:
        # Live from here: 50 new jobs, one every 20 ms, each timed from its commit to its arrival.
        for i in range(50):
            store.create_job(bench_job(count + i, datetime.now(UTC)))
            time.sleep(0.02)  # a steady trickle of changes, not a burst: each one's own latency

    for response in stream:
        change = response.change
        if change.type == pb.JOB_CHANGE_TYPE_BOOKMARK:
            continue
        if change.revision <= current:
            replayed += 1
            if change.revision == current:
                caught_up = time.monotonic() - began
                writer = threading.Thread(target=write_live)
                writer.start()
            continue
        live.append((time.time_ns() - committed[change.revision]) / 1e6)
        if len(live) == 50:
            break
    stream.cancel()  # type: ignore[no-untyped-call]
    channel.close()
    if writer is not None:
        writer.join(60)
    stats = summary(live)
    record(
        "listing",
        call="watch_replay",
        changes=replayed,
        seconds=caught_up,
        changes_per_s=replayed / caught_up if caught_up else 0.0,
        live_p50_ms=stats["p50"],
        live_p99_ms=stats["p99"],
    )


def paced_rounds(job: simulation.SimulatedJob, rounds: int, pace: float) -> None:
    """FL4Health-shaped reports of `rounds` rounds, a round every `pace` seconds (0: as fast as Redis takes them);
    each round the server finishes is a job-level change (its current round)."""
    if not pace:
        simulation.play_rounds(job, rounds)
        return
    job.server.report_values(host_type="server", fit_start="t0")
    for n in range(1, rounds + 1):
        for c in job.clients:
            c.report_round(n, round=n, round_start=f"r{n}", round_end=f"re{n}", eval_round_loss=1 / n)
        job.server.report_round(
            n, round=n, fit_round_end=f"f{n}", eval_round_end=f"e{n}", **{"val - loss - aggregated": 1 / n}
        )
        time.sleep(pace)  # a round's length: the pace of the benchmark's FL servers
    job.server.report_values(fit_end="end", num_rounds=rounds)


def watchers(quick: bool) -> None:
    for pace in (0.2, 0.0):
        watch_fanout(quick, pace)


def watch_fanout(quick: bool, pace: float) -> None:
    subscribers, job_count, rounds = (20, 5, 3) if quick else (100, 20, 10)
    with embedded_plane(launcher_pool=False) as running:
        plane = running.plane
        committed: dict[int, int] = {}

        def note(change: JobChange) -> None:
            committed.setdefault(change.revision, time.time_ns())

        plane.store.on_change(note)
        holder = subprocess.Popen(
            [sys.executable, "-m", "bench.watch_holder", running.address, str(subscribers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        jobs = [simulation.create_running(plane, n_clients=2) for _ in range(job_count)]

        def run(job: simulation.SimulatedJob) -> None:
            paced_rounds(job, rounds, pace)
            simulation.finish(plane, job)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        last = plane.store.current_revision()
        holder.stdin.write(f"{last}\n")
        holder.stdin.close()
        result = read_json_line(holder)
        holder.wait(60)
    latencies = [
        (arrived - committed[revision]) / 1e6
        for stream in result["arrivals"]
        for revision, arrived in stream
        if revision in committed
    ]
    expected = sum(1 for r in committed if r <= last) * subscribers
    stats = summary(latencies)
    record(
        "watchers",
        round_seconds=pace,
        subscribers=subscribers,
        jobs=job_count,
        changes=len(committed),
        p50_ms=stats["p50"],
        p99_ms=stats["p99"],
        max_ms=stats["max"],
        missing=expected - len(latencies),
        p90_ms=percentile(latencies, 90),
    )


def run(quick: bool) -> None:
    listing(quick)
    watchers(quick)
    queue_restart.run(quick)
