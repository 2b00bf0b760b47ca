"""How a browser's Connect call reaches the gRPC servicers: the same methods, the same errors.

The Connect adapters (connect_services.py) run the gRPC servicer's own method for every RPC, so a use case has one
implementation whichever transport carries it. The servicer gets `BrowserContext`, the part of grpc.aio's
ServicerContext that servicers use (the caller's metadata, the peer, ending the call with a status), backed by the
HTTP request. A servicer ends a failed call with `abort_with_status` (api/errors.py maps every exception to a
status through rpc_errors.py); here that status becomes a ConnectError with the same code, message and
google.rpc details, byte for byte, so a browser reads exactly what a gRPC client reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar, cast

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.request import RequestContext
from google.rpc import status_pb2
from protobuf.wkt import Any as ConnectAny

from florist_grpc.api.errors import status_of_exception
from florist_grpc.api.token_table import TokenTable, token_digest

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]
DETAILS_KEY = "grpc-status-details-bin"  # where grpcio-status puts the google.rpc.Status of a status

# grpc's code names are Connect's, but for the one spelt differently.
_CODES = {grpc.StatusCode.CANCELLED: Code.CANCELED}


class Aborted(Exception):
    """A servicer ended the call with `status`, as grpc.aio's abort_with_status does on its own transport."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class BrowserContext:
    """The ServicerContext a servicer gets for a browser's call: what servicers read and do, on the HTTP request."""

    def __init__(self, ctx: RequestContext[Any, Any]) -> None:
        self._ctx = ctx
        self.ended: grpc.Status | None = None  # how the call was ended, possibly from outside it (a reload)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        # HTTP header names arrive lower-cased, as gRPC metadata keys are.
        return tuple(self._ctx.request_headers.allitems())

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        # Connect sends the response headers with the first message; a servicer confirming its stream early (for
        # gRPC clients that wait for it) changes nothing for a browser.
        return None

    def peer(self) -> str:
        """The client's address in grpc's peer form (`ipv4:HOST:PORT`, `ipv6:[HOST]:PORT`)."""
        address = self._ctx.client_address or ""
        host, _, port = address.rpartition(":")
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{address}"

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.ended = status
        raise Aborted(status)


class OpenStreams:
    """The browser streams being served, so that a stop ends them at once: a watch or a followed log never ends by
    itself, and would otherwise hold the stop for the whole grace and then be cut with an error logged. Each ends
    UNAVAILABLE, which the page resumes from once the control plane is back (as a gRPC client does). They are
    kept in the token table too, so that an auth-file reload ends them as it ends a gRPC client's."""

    def __init__(self, table: TokenTable) -> None:
        self._table = table
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @contextlib.contextmanager
    def serving(self, context: BrowserContext, method: str) -> Iterator[None]:
        """Around the serving of one stream, in the task that serves it."""
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            raise ConnectError(Code.UNAVAILABLE, STOPPING)
        self._tasks.add(task)
        digest = token_digest(dict(context.invocation_metadata()))
        try:
            with self._table.open_stream(digest, method, cast(Context, context)):  # '': no token, no reload ends it
                yield
        except asyncio.CancelledError:
            if self._stopping:
                task.uncancel()  # ended by end_all(): answer the browser rather than die mid-response
                raise ConnectError(Code.UNAVAILABLE, STOPPING) from None
            if context.ended is not None:  # ended by a reload of the auth file (TokenTable.replace)
                task.uncancel()
                raise connect_error(context.ended) from None
            raise  # the browser went away
        finally:
            self._tasks.discard(task)

    def end_all(self) -> None:
        """End every open stream, and refuse new ones (the server is stopping)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()


STOPPING = "the control plane is stopping: resume once it is back"


def servicer_context(ctx: RequestContext[Any, Any]) -> Context:
    """The context to hand a gRPC servicer method for this browser call."""
    # BrowserContext implements the part of ServicerContext servicers use; tests/web call every method through it.
    return cast(Context, BrowserContext(ctx))


def connect_error(status: grpc.Status) -> ConnectError:
    """The ConnectError carrying a gRPC status: its code, message and google.rpc.Status details unchanged."""
    code = _CODES.get(status.code) or Code[status.code.name]
    details: list[ErrorDetail] = []
    for key, value in status.trailing_metadata or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            packed = status_pb2.Status.FromString(value).details
            details += [ErrorDetail(ConnectAny(type_url=d.type_url, value=d.value)) for d in packed]
    return ConnectError(code, status.details or "", details)


def connect_error_of(exc: Exception) -> ConnectError:
    """The ConnectError for anything a call raised: a servicer's own status, else what api/errors.py maps it to
    (so nothing leaks as Connect's `unknown` with the exception's text)."""
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, Aborted):
        return connect_error(exc.status)
    return connect_error(status_of_exception(exc))


async def unary_call(
    method: Callable[[Req, Context], Awaitable[Resp]], request: Req, ctx: RequestContext[Any, Any]
) -> Resp:
    """Run a servicer's unary method for a browser."""
    try:
        return await method(request, servicer_context(ctx))
    except Exception as exc:
        raise connect_error_of(exc) from None


async def stream_call(
    method: Callable[[Req, Context], AsyncIterator[Any]],
    request: Req,
    ctx: RequestContext[Any, Any],
    streams: OpenStreams,
    decode: Callable[[Any], Resp] | None = None,
) -> AsyncIterator[Resp]:
    """Run a servicer's server-streaming method for a browser, one of `streams`. `decode` turns what the servicer
    yields into the response message when it yields something else (StreamMetrics and WatchJobs yield each
    response already encoded)."""
    context = BrowserContext(ctx)
    responses = method(request, cast(Context, context))
    try:
        with streams.serving(context, f"/{ctx.method.service_name}/{ctx.method.name}"):
            async for response in responses:
                yield decode(response) if decode is not None else cast(Resp, response)
    except Exception as exc:
        raise connect_error_of(exc) from None
    finally:
        # A browser that goes away closes this generator: close the servicer's at once, so its subscriptions end
        # now rather than when the garbage collector finds it.
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            await aclose()
