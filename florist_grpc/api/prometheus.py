"""The control plane's Prometheus series (every one named `florist_*`) and the `/metrics` endpoint.

One registry per ControlPlane, so several planes in one process (tests, benchmarks) never share counters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from florist_grpc.domain.errors import FloristError
from florist_grpc.domain.model import JobState, MetricsEvent

log = logging.getLogger(__name__)

# Control-plane RPCs take milliseconds; StartTraining waits for an FL server (seconds); streams last a job.
RPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class JobsByState(Collector):
    """florist_jobs{state}: read from the store at scrape time, so it is never out of step with it."""

    def __init__(self, count: Callable[[], dict[JobState, int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("florist_jobs", "Jobs in each state.", labels=["state"])
        try:
            counts = self._count()
        except FloristError as exc:  # the store is down: florist_store_up says so; report no job counts
            log.warning("cannot count jobs for /metrics: %s", exc)
            return
        for state in JobState:
            if state is not JobState.UNSPECIFIED:
                family.add_metric([state.name], counts.get(state, 0))
        yield family


class PlaneMetrics:
    """Every series the control plane exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpcs = Counter("florist_rpcs", "RPCs handled, by method and status code.", ["method", "code"], registry=r)
        self.rpc_seconds = Histogram(
            "florist_rpc_duration_seconds",
            "RPC latency (streams: their lifetime).",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge("florist_active_streams", "Server streams open now.", ["method"], registry=r)
        self.events = Counter("florist_events_persisted", "Metrics events persisted and fanned out.", registry=r)
        self.event_lag = Histogram(
            "florist_report_to_event_lag_seconds",
            "From a report change being read from Redis to its event being persisted and handed to subscribers.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.up = Gauge(
            "florist_dependency_up", "1 when the dependency answers its health probe.", ["dependency"], registry=r
        )
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def count_jobs(self, count: Callable[[], dict[JobState, int]]) -> None:
        self.registry.register(JobsByState(count))

    def events_published(self, events: list[MetricsEvent]) -> None:
        """Count events as they reach the hub and how long after their report change was read they got there."""
        now = datetime.now(UTC)
        self.events.inc(len(events))
        for event in events:
            self.event_lag.observe(max(0.0, (now - event.time).total_seconds()))

    def dependency(self, name: str, healthy: bool) -> None:
        self.up.labels(name).set(1 if healthy else 0)

    def serve(self, host: str, port: int) -> None:
        """Serve `/metrics` on host:port (a daemon thread of prometheus-client)."""
        self._http, self._http_thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
