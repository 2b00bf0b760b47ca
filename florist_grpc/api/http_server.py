"""The dashboard's HTTP server: uvicorn serving the ASGI application of connect_app.py on the control plane's own
event loop, beside grpc.aio, with `bind(settings, tokens)` / `start(servicers)` / `stop()`.

The port is bound in `bind()`, when the control plane binds its gRPC port, so a port in use fails the start before
anything else is touched; requests are served from `start()`, once the use cases behind them are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
from collections.abc import Iterator

import uvicorn

from florist_grpc.api.connect_app import dashboard_app
from florist_grpc.api.connect_calls import OpenStreams
from florist_grpc.api.services import Servicers
from florist_grpc.api.token_table import TokenTable
from florist_grpc.config import Settings
from florist_grpc.net import join_host_port
from florist_grpc.reloading import Reloadable
from florist_grpc.tls_files import TlsMaterial

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The control plane handles SIGINT and SIGTERM itself (cli/service.py) and stops this server in order;
        # uvicorn would take the signals over while serving and re-raise them when done, skipping that cleanup.
        yield


class DashboardServer:
    def __init__(self, settings: Settings, tokens: TokenTable) -> None:
        self._settings, self._tokens = settings, tokens  # tokens: the auth file's; None without one
        self._host, self._tls = settings.host, settings.tls
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._streams: OpenStreams | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def bind(cls, settings: Settings, tokens: TokenTable) -> DashboardServer:
        """Listen on --host:--http-port now (OSError naming the problem when it cannot); requests wait for
        `start`."""
        dashboard = cls(settings, tokens)
        family = socket.getaddrinfo(settings.host or None, settings.http_port, type=socket.SOCK_STREAM)[0][0]
        # create_server sets SO_REUSEADDR (a port in TIME_WAIT is free) and never SO_REUSEPORT (a port in use by
        # another server is an error, as for the gRPC port).
        dashboard._socket = socket.create_server((settings.host, settings.http_port), family=family)
        return dashboard

    @property
    def port(self) -> int:
        assert self._socket is not None, "not bound"
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{join_host_port(self._host, self.port)}/"

    def start(self, servicers: Servicers, certificate: Reloadable[TlsMaterial] | None = None) -> None:
        """Serve the page and the API for browsers over `servicers` from the running event loop, with the gRPC
        port's tokens. Without an auth file only loopback may use it (unless --insecure-no-auth), as for gRPC.
        `certificate`: the TLS files as reloaded; new connections get the renewed ones, as on the gRPC port."""
        assert self._socket is not None, "bind() first"
        settings, tls = self._settings, self._tls
        loopback_only = self._tokens.tokens is None and not settings.insecure_no_auth
        app = dashboard_app(servicers, self._tokens, loopback_only=loopback_only)
        self._streams = app.streams
        config = uvicorn.Config(
            app,
            lifespan="off",  # the control plane starts and stops what the application uses
            ws="none",
            http="h11",
            log_config=None,  # the control plane's logging (text or JSON) applies
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,  # the peer is the connection's (audit lines), never a header's X-Forwarded-For
            # What still runs after this at a stop is cut, as grpc.aio's stop(grace) does (the streams are ended
            # first: stop()).
            timeout_graceful_shutdown=math.ceil(settings.timeouts.shutdown_grace_seconds),
            ssl_certfile=str(tls.cert_file) if tls else None,
            ssl_keyfile=str(tls.key_file) if tls else None,
            ssl_ca_certs=str(tls.client_ca_file) if tls and tls.client_ca_file else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca_file else ssl.CERT_NONE,
        )
        config.load()  # a bad certificate fails here, in the start, not in the serving task
        if certificate is not None and isinstance(context := config.ssl, ssl.SSLContext):
            certificate.on_change.append(lambda old, new: self._renew(context, new))
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="dashboard-http")
        log.info("dashboard on %s", self.url)

    def _renew(self, context: ssl.SSLContext, new: TlsMaterial) -> None:
        """Serve the renewed files from the next handshake on: each connection takes its certificate from the
        context when it is accepted, so open ones keep theirs. A renewed client CA is trusted beside the old one
        (a context's trust store only grows) until the next start."""
        assert self._tls is not None
        context.load_cert_chain(self._tls.cert_file, self._tls.key_file)  # as checked by the reload just now
        if new.ca is not None:
            context.load_verify_locations(cadata=new.ca.decode())

    async def stop(self) -> None:
        """Stop serving (idempotent): open streams end at once (UNAVAILABLE: the page resumes once the control
        plane is back), new connections are refused, unary calls in flight get the grace given to start."""
        if self._streams is not None:
            self._streams.end_all()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server, self._task = None, None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
