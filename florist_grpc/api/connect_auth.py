"""The browser API's cross-cutting concerns as connectrpc interceptors, on the gRPC side's own rules.

- `CallerCheck` (a metadata interceptor, so it runs before the request body is read): the bearer token and role
  rules of api/auth.py, refusals with the same statuses; it also names the caller's role in the response header
  `florist-caller-role` (`viewer`, `operator`, `admin`), so that the page shows a viewer no button it could not use.
- `AuditTrail`: the audit line of api/audit.py for every mutating call, as the gRPC interceptor writes it.

Order (outermost first, as wired in connect_app.py): CallerCheck, then AuditTrail, so a refused call is refused
before anything else runs, as on the gRPC port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from florist_grpc.api.audit import MUTATING, acted_on, record
from florist_grpc.api.auth import authorize, identify
from florist_grpc.api.connect_calls import BrowserContext, connect_error
from florist_grpc.api.token_table import TokenTable
from florist_grpc.domain.errors import PermissionDenied, Unauthenticated
from florist_grpc.rpc_errors import to_status

ROLE_HEADER = "florist-caller-role"
# Without an auth file every caller may call every method, as on the gRPC port.
UNAUTHENTICATED_ROLE = "admin"

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def method_path(ctx: RequestContext[Any, Any]) -> str:
    """The call's gRPC method name, `/florist.v1.JobService/GetJob`: what auth and audit rules are written for."""
    return f"/{ctx.method.service_name}/{ctx.method.name}"


def _metadata(ctx: RequestContext[Any, Any]) -> dict[str, str]:
    return dict(ctx.request_headers.items())


class CallerCheck:
    """Refuse a call whose token may not call its method (UNAUTHENTICATED / PERMISSION_DENIED, with the details
    rpc_errors gives them); name the caller's role in the response."""

    def __init__(self, table: TokenTable) -> None:
        self._table = table  # the tokens in force now (reloaded with the auth file); None: every call is allowed

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        role = UNAUTHENTICATED_ROLE
        if (tokens := self._table.tokens) is not None:
            try:
                principal = authorize(tokens, method_path(ctx), _metadata(ctx))
            except (Unauthenticated, PermissionDenied) as exc:
                raise connect_error(to_status(exc)) from None
            role = principal.role if principal is not None else role
        ctx.response_headers[ROLE_HEADER] = role

    async def on_end(self, token: None, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        return None


def _code_name(error: BaseException | None) -> str:
    """The call's outcome as the gRPC audit line spells it (OK, NOT_FOUND, CANCELLED, ...)."""
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):  # the browser went away
        return "CANCELLED"
    code = error.code if isinstance(error, ConnectError) else Code.UNKNOWN
    return "CANCELLED" if code is Code.CANCELED else code.name


class AuditTrail:
    """One audit line per mutating call (every mutating RPC is unary)."""

    def __init__(self, table: TokenTable) -> None:
        self._table = table

    async def intercept_unary(
        self,
        call_next: Callable[[Req, RequestContext[Any, Any]], Awaitable[Resp]],
        request: Req,
        ctx: RequestContext[Any, Any],
    ) -> Resp:
        method = method_path(ctx)
        if method not in MUTATING:
            return await call_next(request, ctx)
        tokens = self._table.tokens
        principal = identify(tokens, _metadata(ctx)) if tokens is not None else None
        response: Resp | None = None
        error: BaseException | None = None
        try:
            response = await call_next(request, ctx)
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            record(principal, method, acted_on(request, response), _code_name(error), BrowserContext(ctx).peer())
