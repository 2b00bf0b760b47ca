"""The control plane's Prometheus series and the `/metrics` endpoint.

gRPC server series under go-grpc-prometheus's names and labels (`grpc_server_started_total`,
`grpc_server_handled_total`, `grpc_server_handling_seconds`, `grpc_server_msg_received_total`,
`grpc_server_msg_sent_total`; labels `grpc_type`, `grpc_service`, `grpc_method`, `grpc_code`), so every gRPC
dashboard and alert reads them as they are; domain series named `florist_*`; `florist_build_info`; and
prometheus-client's process, platform and GC collectors. One registry per ControlPlane, so several planes in one
process (tests, benchmarks) never share counters.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import florist_grpc
from florist_grpc.api.metrics_endpoint import MetricsEndpoint
from florist_grpc.domain.errors import FloristError
from florist_grpc.domain.model import JobState, MetricsEvent

log = logging.getLogger(__name__)

# Unary control-plane RPCs take milliseconds; StartTraining waits for an FL server to be ready (seconds).
RPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
GRPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class JobsByState(Collector):
    """florist_jobs{state}: read from the store at scrape time, so it is never out of step with it."""

    def __init__(self, count: Callable[[], dict[JobState, int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("florist_jobs", "Jobs in each state.", labels=["state"])
        try:
            counts = self._count()
        except FloristError as exc:  # the store is down: florist_dependency_up says so; report no job counts
            log.warning("cannot count jobs for /metrics: %s", exc)
            return
        for state in JobState:
            if state is not JobState.UNSPECIFIED:
                family.add_metric([state.name], counts.get(state, 0))
        yield family


@dataclass(frozen=True)
class GrpcServerSeries:
    """go-grpc-prometheus's server series (its names, help texts and labels)."""

    started: Counter
    handled: Counter
    handling_seconds: Histogram
    received: Counter
    sent: Counter

    @staticmethod
    def on(r: CollectorRegistry) -> GrpcServerSeries:
        return GrpcServerSeries(
            Counter("grpc_server_started", "Total number of RPCs started on the server.", GRPC_LABELS, registry=r),
            Counter(
                "grpc_server_handled",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                [*GRPC_LABELS, "grpc_code"],
                registry=r,
            ),
            Histogram(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the "
                "server.",
                GRPC_LABELS,
                buckets=RPC_BUCKETS,
                registry=r,
            ),
            Counter(
                "grpc_server_msg_received",
                "Total number of RPC stream messages received on the server.",
                GRPC_LABELS,
                registry=r,
            ),
            Counter(
                "grpc_server_msg_sent",
                "Total number of gRPC stream messages sent by the server.",
                GRPC_LABELS,
                registry=r,
            ),
        )


def build_labels() -> dict[str, str]:
    """florist_build_info's labels: this package's version and those of what it serves with."""
    return {
        "version": florist_grpc.__version__,
        "grpcio_version": importlib.metadata.version("grpcio"),
        "flwr_version": importlib.metadata.version("flwr"),
    }


class PlaneMetrics:
    """Every series the control plane exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)  # what prometheus-client registers on its default registry, on ours
        Info("florist_build", "florist-grpc's version (1, labelled).", registry=r).info(build_labels())
        self.grpc = GrpcServerSeries.on(r)
        # Kept beside the standard series: subscribers and agent sessions open now, without subtracting counters.
        self.active_streams = Gauge("florist_active_streams", "Streaming calls open now.", ["method"], registry=r)
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
        self._endpoint: MetricsEndpoint | None = None

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
        """Serve `/metrics` on host:port (and nothing else: any other path is 404); OSError naming the address."""
        try:
            self._endpoint = MetricsEndpoint(self.registry, host, port)
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
