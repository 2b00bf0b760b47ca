"""The one place every florist gRPC server is created (control plane and agent), with each option once, and why."""

from __future__ import annotations

import gc
import threading
from typing import Any

import grpc

from florist_grpc.api.decoding import RequestDecoding
from florist_grpc.tls_files import TlsMaterial

MiB = 1024 * 1024

# Every channel option of the control plane and the agent, each once, with why
# (https://github.com/grpc/grpc/blob/master/doc/keepalive.md and grpc/impl/channel_arg_names.h).
SERVER_OPTIONS: list[tuple[str, int]] = [
    # Ping idle connections every 60 s so that half-open TCP connections (a client machine gone) are noticed
    # and long-lived StreamMetrics calls through NATs and load balancers are not silently dropped.
    ("grpc.keepalive_time_ms", 60_000),
    # A peer that does not answer a keepalive ping within 20 s is considered dead; its streams are released.
    ("grpc.keepalive_timeout_ms", 20_000),
    # Let clients keep idle streams alive with their own pings, but not more often than every 10 s
    # (the server answers faster pings with GOAWAY "too_many_pings").
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Requests are small (a job definition); 16 MiB bounds what one bad caller can make us buffer.
    ("grpc.max_receive_message_length", 16 * MiB),
    # A job with many clients and rounds carries large accumulated reports.
    ("grpc.max_send_message_length", 64 * MiB),
    # Thousands of StreamMetrics subscribers may share one HTTP/2 connection (a platform's fan-in proxy).
    ("grpc.max_concurrent_streams", 10_000),
    # gRPC sets SO_REUSEPORT on Linux by default: a second `serve` on the same port would then bind too and the
    # kernel would split connections between both. Off, a port in use is an error at start.
    ("grpc.so_reuseport", 0),
    # Calls grpc core has received but the application has not yet picked up wait in a pending queue; by default
    # (src/core/server/server.h) core rejects calls at random once more than 1,000 wait (random early detection,
    # certain at 3,000). grpc.aio picks calls up one at a time from the event loop, so a burst of StreamMetrics
    # opens (a dashboard reconnecting 2,000 streams) crossed that line: ~10% of them ended CANCELLED before
    # their handler ever ran (docs/benchmarks.md, streams). Size the queue like max_concurrent_streams.
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
]


# How many tracked objects the collector lets accumulate before a young collection, in a process serving gRPC.
# Every message a stream sends allocates a few (grpc's operation and tag, a future, coroutines) that reference
# counting frees, but the collector counts them: at CPython's default (700), with 1,000 streams of 10 events/s, the
# serving loop ran ~25 young collections a second, each pausing it 2-50 ms on this machine, and a full collection
# (~190k objects) of 130-280 ms every few seconds; none found more than 25 objects to free (docs/benchmarks.md,
# 14.2). Collections still run, ~30x less often; cyclic garbage waits a little longer to be freed.
YOUNG_GENERATION_THRESHOLD = 20_000


def collect_less_often() -> None:
    """Raise the young generation's threshold to YOUNG_GENERATION_THRESHOLD, unless it is already higher or the
    process turned automatic collection off (0)."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_GENERATION_THRESHOLD:
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


class ServingCertificate:
    """The certificate (and client CA) new connections get. gRPC asks `fetch` at every TLS handshake, on its own
    threads; a renewed certificate (`renew`) is handed over once and used from the next handshake on, while the
    connections already open keep theirs (grpc.dynamic_ssl_server_credentials)."""

    def __init__(self, material: TlsMaterial) -> None:
        self._lock = threading.Lock()
        self._config = self._configuration(material)
        self._renewed = False
        self._require_client_auth = material.ca is not None

    @staticmethod
    def _configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        assert material.key is not None and material.cert_chain is not None
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert_chain)], material.ca)

    def renew(self, old: TlsMaterial, new: TlsMaterial) -> None:
        """Serve `new` from the next handshake on (any thread)."""
        config = self._configuration(new)
        with self._lock:
            self._config, self._renewed = config, True

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at each handshake: a new configuration, or None to keep the one it has."""
        with self._lock:
            if not self._renewed:
                return None
            self._renewed = False
            return self._config

    def credentials(self) -> grpc.ServerCredentials:
        with self._lock:
            initial = self._config
        fetch: Any = self.fetch  # the stubs say it must always answer; gRPC takes None as 'no change'
        return grpc.dynamic_ssl_server_credentials(initial, fetch, self._require_client_auth)


def add_port(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `address`; a port already in use is a clear error naming it (never a silently shared port)."""
    try:
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen on {address}: the port is in use or not available ({exc})") from exc


def build_server(interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]) -> grpc.aio.Server:
    """The one place every florist gRPC server (control plane and agent) is created."""
    collect_less_often()
    # Innermost: it wraps the servicer's own handler, so an undecodable request is INVALID_ARGUMENT
    # (api/decoding.py) while the interceptors around it (auth) still decide first.
    return grpc.aio.server(interceptors=[*interceptors, RequestDecoding()], options=SERVER_OPTIONS)
