"""The auth file's tokens as they are now, and the open streams of each: reloading the file takes effect at once.

Every call is authorized against the tokens in force when it starts. A stream lives on, so the table keeps each
open stream (a server stream, or an agent's session) under its token's hash: a reload that removes a token ends its
streams UNAUTHENTICATED; one that changes a token's line (its role or PROJECTS) ends its callers' streams
UNAVAILABLE, so that they reconnect under what the line says now (an agent's session and its tunnels are left open:
what its site may run is read from the table at each start, never from the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from florist_grpc.api.auth import AGENT_METHODS, Principal
from florist_grpc.api.errors import abort
from florist_grpc.domain.errors import FloristError, Unauthenticated, Unavailable
from florist_grpc.rpc_errors import to_status

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # grpc's runtime class is not generic; only the stubs are
    Handler = grpc.RpcMethodHandler

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(eq=False)
class _Stream:
    method: str
    context: Context
    task: asyncio.Task[Any] | None  # the call's own task


def token_digest(metadata: dict[str, str]) -> str:
    """The hash of the bearer token a call carries ('' for none): the key of the auth file's lines."""
    scheme, _, token = metadata.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return hashlib.sha256(token.strip().encode()).hexdigest()


class TokenTable:
    """`tokens` (hash -> principal) as the auth file says now; None without an auth file (never reloaded)."""

    def __init__(self, tokens: dict[str, Principal] | None) -> None:
        self.tokens = tokens
        self._streams: dict[str, set[_Stream]] = {}  # event loop only
        self._ending: set[asyncio.Task[None]] = set()  # held until done (the loop keeps only weak references)

    def replace(self, tokens: dict[str, Principal]) -> None:
        """The auth file as reloaded (event loop): end the streams of tokens removed or changed."""
        old, self.tokens = self.tokens or {}, tokens
        for digest, principal in old.items():
            if digest not in tokens:
                gone = Unauthenticated(f"the token of {principal.name} was removed from the auth file")
                self._end(digest, gone, sessions_too=True)
            elif tokens[digest] != principal:
                changed = Unavailable(f"the auth file's line of {principal.name} changed: call again")
                self._end(digest, changed, sessions_too=False)

    def _end(self, digest: str, error: FloristError, sessions_too: bool) -> None:
        for stream in list(self._streams.get(digest, ())):
            if stream.method not in AGENT_METHODS or sessions_too:  # a session's tunnels carry its FL traffic
                task = asyncio.get_running_loop().create_task(_end_stream(stream, error))
                self._ending.add(task)
                task.add_done_callback(self._ending.discard)

    @contextlib.contextmanager
    def open_stream(self, digest: str, method: str, context: Context) -> Iterator[_Stream]:
        """Around the serving of one stream of `method`, in its own task: a reload may end it (a browser's
        stream too, api/connect_calls.py)."""
        stream = _Stream(method, context, asyncio.current_task())  # the call's own task: grpc runs handlers in it
        self._streams.setdefault(digest, set()).add(stream)
        try:
            yield stream
        finally:
            streams = self._streams.get(digest, set())
            streams.discard(stream)
            if not streams:
                self._streams.pop(digest, None)

    def watch(self, handler: Handler, method: str, digest: str) -> Handler:
        """`handler`, its streams kept under `digest` while open, so that a reload can end them. Unary calls end
        by themselves: returned as they are."""
        if handler is None or not handler.response_streaming or not digest:
            return handler
        behavior: Any = handler.stream_stream if handler.request_streaming else handler.unary_stream

        async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
            with self.open_stream(digest, method, context):
                async for response in behavior(request, context):
                    yield response

        async def run(request: Any, context: Context) -> Any:
            # A stream written with context.write by a coroutine (an agent's session: api/agent_service.py).
            with self.open_stream(digest, method, context):
                return await behavior(request, context)

        wrapped = generate if inspect.isasyncgenfunction(behavior) else run
        factory: Any = (
            grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        )
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        return factory(wrapped, **kwargs)  # type: ignore[no-any-return]


async def _end_stream(stream: _Stream, error: FloristError) -> None:
    """End an open stream with `error`'s status: the status is sent first (the caller sees it), then the call's
    handler is cancelled (it may be waiting for news that never comes)."""
    try:
        await abort(stream.context, to_status(error))
    except Exception as exc:  # grpc raises AbortError here once the status is sent; anything else: already over
        log.debug("ending a stream: %r", exc)
    if stream.task is not None:
        stream.task.cancel()
