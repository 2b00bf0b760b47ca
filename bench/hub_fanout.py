"""Fan-out alone: events persisted and handed to the hub at a fixed rate, each delivered to every StreamMetrics
subscriber. No Redis, no follower, no read throttle: what the streams themselves cost, per message and in latency.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.harness import load_process, read_json_line
from bench.stats import record, summary
from florist_grpc.domain.model import SERVER_SOURCE, JobState, JsonObject, MetricsEvent
from florist_grpc.store.base import ReportChange
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import embedded_plane


async def _loop_cpu_seconds() -> float:
    return time.thread_time()  # run on the plane's loop: the CPU time of the thread that serves every stream


def hub_fanout(subscribers: int, rate: float, seconds: float = 3.0) -> None:
    with embedded_plane(launcher_pool=False) as running:
        plane = running.plane
        job = simulation.create_running(plane, n_clients=1, attach=False)
        subscriber = load_process("subscribe", running.address, job.job_id, str(subscribers))
        assert subscriber.stdout is not None and subscriber.stdout.readline().strip() == "ready"
        loop_began = running.run(_loop_cpu_seconds())
        sent: list[int] = []
        report: JsonObject = {}
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            sent.append(time.time_ns())
            now = datetime.now(UTC)
            change = ReportChange(job.job_id, SERVER_SOURCE, report, {"t": sent[-1], "i": len(sent) - 1}, now)
            event = plane.store.append_report_changes([change])[0]
            assert isinstance(event, MetricsEvent)
            plane.hub.publish_threadsafe([event])
            report = change.report
            if (delay := len(sent) / rate - elapsed) > 0:
                time.sleep(delay)  # pacing the load, not synchronisation
        ended = plane.store.transition(job.job_id, {JobState.IN_PROGRESS}, JobState.CANCELLED, datetime.now(UTC))
        assert ended is not None
        plane.hub.publish_threadsafe([ended])
        result = read_json_line(subscriber)
        subscriber.wait(60)
        loop_seconds = running.run(_loop_cpu_seconds()) - loop_began
    latencies = [(at - sent[index]) / 1e6 for stream in result["arrivals"] for index, at in stream]
    stats = summary(latencies)
    record(
        "hub_fanout",
        subscribers=subscribers,
        events_per_s=rate,
        events=len(sent),
        p50_ms=stats["p50"],
        p99_ms=stats["p99"],
        max_ms=stats["max"],
        missing=len(sent) * subscribers - len(latencies),
        events_per_stream=result["events_per_stream"],
        gaps=result["gaps"],
        loop_cpu_us_per_message=loop_seconds / max(1, len(latencies)) * 1e6,
    )


def run(quick: bool = False) -> None:
    for subscribers, rate in ((100, 100), (1000, 10)) if quick else ((100, 100), (1000, 10), (1000, 30)):
        hub_fanout(subscribers, rate)
