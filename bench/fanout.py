"""Fan-out latency: from an FL-process-style report in Redis to its arrival at each StreamMetrics subscriber."""

from __future__ import annotations

from bench.harness import embedded_plane, load_process, load_run, read_json_line
from bench.stats import record, summary
from florist_grpc import simulation

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


def fanout(subscribers: int, rate: int, seconds: float = 3.0) -> dict[str, float]:
    with embedded_plane() as running:
        plane = running.plane
        job = simulation.create_running(plane, n_clients=1)
        subscriber = load_process("subscribe", running.address, job.job_id, str(subscribers))
        assert subscriber.stdout is not None and subscriber.stdout.readline().strip() == "ready"
        sent = load_run("report", plane.redis_url, str(rate), str(seconds), job.server.uuid)
        simulation.finish(plane, job)
        result = read_json_line(subscriber)
        subscriber.wait(60)
    latencies = report_latencies_ms(sent["sent"], result["arrivals"])
    stats = summary(latencies)
    record(
        "fanout",
        impl="florist-grpc",
        subscribers=subscribers,
        reports_per_s=rate,
        reports=len(sent["sent"]),
        p50_ms=stats["p50"],
        p99_ms=stats["p99"],
        max_ms=stats["max"],
        missing=len(sent["sent"]) * subscribers - len(latencies),
        events_per_stream=result["events_per_stream"],
        gaps=result["gaps"],
    )
    return stats


def run(quick: bool = False) -> None:
    for subscribers in (1, 100) if quick else (1, 100, 1000):
        for rate in (100, 1000):
            fanout(subscribers, rate)
