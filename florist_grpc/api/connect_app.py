"""The dashboard's one HTTP origin (`serve --http-port`): the page at `/` and the florist.v1 API for browsers
under `/florist.v1.<Service>/<Method>` (Connect protocol, and gRPC-Web: both work over HTTP/1.1).

Page and API share one origin, so the browser needs no CORS (connectrpc has no CORS support either). The page is
the bundle built from clients/web (florist_grpc/web, committed and checked for drift); nothing is fetched from
anywhere else, which the Content-Security-Policy below also holds the page to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from connectrpc.interceptor import Interceptor
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from florist_grpc.api.connect_auth import AuditTrail, CallerCheck
from florist_grpc.api.connect_calls import OpenStreams
from florist_grpc.api.connect_services import (
    AgentServiceAdapter,
    CatalogServiceAdapter,
    JobServiceAdapter,
    TrainingServiceAdapter,
)
from florist_grpc.api.services import Servicers
from florist_grpc.api.token_table import TokenTable
from florist_grpc.net import is_loopback
from florist_grpc.proto.florist.v1.agent_service_connect import AgentServiceASGIApplication
from florist_grpc.proto.florist.v1.catalog_service_connect import CatalogServiceASGIApplication
from florist_grpc.proto.florist.v1.job_service_connect import JobServiceASGIApplication
from florist_grpc.proto.florist.v1.training_service_connect import TrainingServiceASGIApplication

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Every response's headers. The page runs only its own script and talks only to this origin; it is never framed
# (clickjacking) and sends no Referer.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _host_of(scope: Scope) -> str:
    """The Host header's host, without port (`[::1]:8080` -> `::1`)."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Dashboard:
    """Routes a request to its service's Connect application, anything else to the page's files."""

    def __init__(self, services: list[Any], page: ASGIApp, loopback_only: bool, streams: OpenStreams) -> None:
        self._services: dict[str, ASGIApp] = {app.path: app for app in services}
        self.streams = streams  # ended by the server's stop
        self._page = page
        # Without an auth file anyone who reaches the port may do anything, so only loopback may: a page on another
        # site that rebinds its DNS name to 127.0.0.1 sends its own name as Host, and is refused (as Jupyter does).
        self._loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan events (uvicorn runs with lifespan off), no websockets
            return
        if self._loopback_only and not (_host_of(scope) == "localhost" or is_loopback(_host_of(scope))):
            await _respond(send, 403, b"this dashboard runs without authentication: open it on localhost\n")
            return
        service = "/" + scope["path"].split("/")[1] if scope["path"].startswith("/florist.") else ""
        app = self._services.get(service, self._page)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        except HTTPException as exc:  # StaticFiles: no such file (404), or not GET/HEAD (405)
            await _respond(send, exc.status_code, f"{exc.detail}\n".encode())


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def dashboard_app(
    servicers: Servicers, tokens: TokenTable, web_dir: Path = WEB_DIR, loopback_only: bool = False
) -> Dashboard:
    """The dashboard's ASGI application over the gRPC servicers, with their auth (`tokens` as the auth file says
    now, reloaded with it; its tokens None = no auth file)."""
    # Outermost first: the token is checked before the request body is read, then mutating calls are audited.
    interceptors: list[Interceptor] = [CallerCheck(tokens), AuditTrail(tokens)]
    streams = OpenStreams(tokens)
    services = [
        JobServiceASGIApplication(JobServiceAdapter(servicers.jobs, streams), interceptors=interceptors),
        TrainingServiceASGIApplication(TrainingServiceAdapter(servicers.training, streams), interceptors=interceptors),
        CatalogServiceASGIApplication(CatalogServiceAdapter(servicers.catalog), interceptors=interceptors),
        AgentServiceASGIApplication(AgentServiceAdapter(servicers.agents), interceptors=interceptors),
    ]
    page = StaticFiles(directory=web_dir, html=True)
    return Dashboard(services, page, loopback_only, streams)
