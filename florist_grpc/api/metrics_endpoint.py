"""The Prometheus endpoint: `/metrics` and nothing else.

prometheus-client's own `start_http_server` answers every path with the metrics, so a probe of `/healthz` or a
typo looks healthy; this serves its WSGI app on `/metrics` only and answers 404 elsewhere.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

PATH = "/metrics"
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr (and break one-JSON-object-per-line logs)."""


def only_metrics(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app` on PATH; 404 for every other path."""

    def routed(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: metrics are at {PATH}\n".encode()]

    return routed


class MetricsEndpoint:
    """`/metrics` of `registry` on host:port, served by daemon threads until `close()`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # an IPv6 --host works too

        class Server(ThreadingMixIn, WSGIServer):
            address_family = family
            daemon_threads = True  # a scrape in flight never holds up shutdown

        self._server: WSGIServer = make_server(
            host, port, only_metrics(make_wsgi_app(registry)), Server, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-endpoint", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
