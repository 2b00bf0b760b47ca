"""Fan-out latency: from an FL-process-style report in Redis to its arrival at each StreamMetrics subscriber."""

from __future__ import annotations

import gc
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.florist_baseline import POLL_SECONDS, FloristStyleListeners, FloristStyleStore
from bench.harness import load_process, load_run, read_json_line
from bench.profile import sampled
from bench.stats import record, summary
from florist_grpc.config import Timeouts
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import embedded_plane

GOAL_P99_MS = 20.0


def report_latencies_ms(sent: list[int], arrivals: list[list[tuple[int, int]]]) -> list[float]:
    """Per subscriber and report: from the report's SET to the first event that carries it or a later report.

    Reports of one source are whole snapshots, so several may reach a subscriber in one event (coalesced);
    each still counts, with its own send time.
    """
    latencies: list[float] = []
    for unordered in arrivals:
        stream = sorted(unordered)
        position = 0
        for index, sent_ns in enumerate(sent):
            while position < len(stream) and stream[position][0] < index:
                position += 1
            if position == len(stream):
                break  # never delivered: counted below as missing
            latencies.append((stream[position][1] - sent_ns) / 1e6)
    return latencies


def event_timing_ms(sent: list[int], arrivals: list[list[tuple[int, int]]]) -> dict[str, float]:
    """Where a report's latency goes, per event (keyed by the newest report it carries): from that report's SET to
    the event's first arrival at any stream (read throttle's wait for it excluded: ingest and the first write),
    and from the first to the last stream receiving it (the fan-out's spread)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for stream in arrivals:
        for index, at in stream:
            first[index] = min(first.get(index, at), at)
            last[index] = max(last.get(index, at), at)
    to_first = summary([(first[i] - sent[i]) / 1e6 for i in first])
    spread = summary([(last[i] - first[i]) / 1e6 for i in first])
    return {
        "first_p50_ms": to_first["p50"],
        "first_p99_ms": to_first["p99"],
        "spread_p50_ms": spread["p50"],
        "spread_p99_ms": spread["p99"],
    }


@contextmanager
def collections_timed() -> Iterator[dict[str, float]]:
    """The garbage collector's pauses in this process (the control plane's) while the block runs."""
    pauses: list[float] = []
    began = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - began[0])

    totals: dict[str, float] = {}
    gc.callbacks.append(timed)
    try:
        yield totals
    finally:
        gc.callbacks.remove(timed)
        totals.update(gc_collections=len(pauses), gc_ms=sum(pauses) * 1e3, gc_max_ms=max(pauses, default=0) * 1e3)


def record_latencies(
    impl: str, subscribers: int, rate: int, sent: list[int], arrivals: list[list[tuple[int, int]]], **extra: object
) -> dict[str, float]:
    latencies = report_latencies_ms(sent, arrivals)
    stats = summary(latencies)
    record(
        "fanout",
        impl=impl,
        subscribers=subscribers,
        reports_per_s=rate,
        reports=len(sent),
        p50_ms=stats["p50"],
        p99_ms=stats["p99"],
        max_ms=stats["max"],
        missing=len(sent) * subscribers - len(latencies),
        **extra,
    )
    return stats


def fanout(subscribers: int, rate: int, seconds: float = 3.0) -> dict[str, float]:
    # No launcher pool: nothing here launches an FL process, and a pool warming up (~3 s of CPU importing torch)
    # would share the 2 cores with the seconds measured. It did until section 20 (docs/benchmarks.md).
    with embedded_plane(launcher_pool=False) as running:
        plane = running.plane
        job = simulation.create_running(plane, n_clients=1)
        subscriber = load_process("subscribe", running.address, job.job_id, str(subscribers))
        assert subscriber.stdout is not None and subscriber.stdout.readline().strip() == "ready"
        with sampled(f"fanout-{subscribers}x{rate}"), collections_timed() as collections:
            sent = load_run("report", plane.redis_url, str(rate), str(seconds), job.server.uuid)
        simulation.finish(plane, job)
        result = read_json_line(subscriber)
        subscriber.wait(60)
        stored = plane.store.get_job(job.job_id)
        assert stored is not None
    return record_latencies(
        "florist-grpc",
        subscribers,
        rate,
        sent["sent"],
        result["arrivals"],
        events=stored.last_sequence,  # the job's events: a gap-free stream sees every one of them
        events_per_stream=result["events_per_stream"],
        events_per_stream_max=result.get("events_per_stream_max"),
        gaps=result["gaps"],
        **event_timing_ms(sent["sent"], result["arrivals"]),
        **collections,
    )


def fanout_baseline(subscribers: int, rate: int, seconds: float = 3.0) -> dict[str, float]:
    """The same workload through the FLorist-style pipeline: listener thread, whole-document rewrite, 1 s polls."""
    with tempfile.TemporaryDirectory() as scratch:
        redis = EmbeddedRedis(Path(scratch), Timeouts())
        url = redis.start()
        store = FloristStyleStore(Path(scratch) / "baseline.sqlite3")
        store.create("job", ["server"])
        listeners = FloristStyleListeners(url, store)
        run_uuid = uuid.uuid4().hex
        listeners.follow("job", "server", run_uuid)
        arrivals: list[list[tuple[int, int]]] = [[] for _ in range(subscribers)]
        stop = threading.Event()

        def poll(i: int) -> None:
            seen = -1
            while not stop.is_set():
                index = store.read("job").get("server", {}).get("i")
                if isinstance(index, int) and index != seen:
                    seen = index
                    arrivals[i].append((index, time.time_ns()))
                stop.wait(POLL_SECONDS)  # the baseline's 1 s polling interval, which is what is measured

        pollers = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(subscribers)]
        for poller in pollers:
            poller.start()
        sent = load_run("report", url, str(rate), str(seconds), run_uuid)
        time.sleep(POLL_SECONDS + 0.5)  # let every poller see the last report once more
        stop.set()
        for poller in pollers:
            poller.join(5)
        listeners.stop()
        redis.stop()
    return record_latencies("florist-style", subscribers, rate, sent["sent"], arrivals)


def run(quick: bool = False) -> None:
    for subscribers in (1, 100) if quick else (1, 100, 1000):
        for rate in (100, 1000):
            fanout(subscribers, rate)
            fanout_baseline(subscribers, rate)
