"""Bearer-token authentication and role checks, as one grpc.aio interceptor.

The auth file holds `ROLE SHA256_HEX_OF_TOKEN [NAME [PROJECTS]]` lines (`#` comments): the server never stores
tokens, only their hashes. PROJECTS is a comma-separated list of project names, or `*` (every project, also what a
line without it means). Roles nest: `viewer` may read and stream, `operator` also creates, starts, stops and
deletes jobs and downloads models, `admin` may call every method (and set a job's priority); a method no table
names is an admin's. Every role sees only the jobs of its projects (the use cases check, in jobs/registry.py).
`agent` (`agent SHA256_HEX NAME [PROJECTS]`, a token bound to one agent name) may only open its own agent session
(AgentService/Connect, with that NAME in its hello: checked by the servicer); its PROJECTS bound which jobs may
run clients on its site. Health checks and server reflection need no token: load balancers and orchestrators
probe the service, and the schema is public (it is in the .proto files), so grpcurl, buf curl and reflection
clients find methods without one; every call of a method needs it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from florist_grpc.api.errors import abort
from florist_grpc.domain.errors import PermissionDenied, Unauthenticated
from florist_grpc.domain.projects import AGENT_ROLE, EVERY_PROJECT, Caller, Projects
from florist_grpc.domain.projects import ROLES as CALLER_ROLES
from florist_grpc.domain.validation import agent_name_problem
from florist_grpc.rpc_errors import to_status

ROLES = (*CALLER_ROLES, AGENT_ROLE)
AGENT_CONNECT = "/florist.v1.AgentService/Connect"
AGENT_TUNNEL = "/florist.v1.AgentService/Tunnel"
# What agent tokens may call, and only they.
AGENT_METHODS = frozenset({AGENT_CONNECT, AGENT_TUNNEL})
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)
VIEWER_METHODS = frozenset(
    {
        "/florist.v1.JobService/GetJob",
        "/florist.v1.JobService/ListJobs",
        "/florist.v1.JobService/WatchJobs",
        "/florist.v1.CatalogService/GetCatalog",
        "/florist.v1.TrainingService/StreamMetrics",
        "/florist.v1.TrainingService/StreamLogs",
        "/florist.v1.AgentService/ListAgents",
    }
)
OPERATOR_METHODS = VIEWER_METHODS | {
    "/florist.v1.JobService/CreateJob",
    "/florist.v1.JobService/DeleteJob",
    "/florist.v1.TrainingService/StartTraining",
    "/florist.v1.TrainingService/StopTraining",
    "/florist.v1.TrainingService/DownloadModel",
}
# The least role that may call each method; anything else is an admin's.
METHODS_BY_ROLE = {"viewer": VIEWER_METHODS, "operator": OPERATOR_METHODS}


if TYPE_CHECKING:
    from florist_grpc.api.token_table import TokenTable

    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # grpc's runtime class is not generic; only the stubs are
    Handler = grpc.RpcMethodHandler

# Who a token belongs to: its name, role and projects.
Principal = Caller


class AuthFileError(ValueError):
    pass


def _principal(path: Path, number: int, parts: list[str]) -> Principal:
    """One line's principal; AuthFileError naming the line."""
    where = f"{path}:{number}"
    if not 2 <= len(parts) <= 4 or parts[0] not in ROLES:
        raise AuthFileError(f"{where}: expected 'ROLE SHA256_HEX [NAME [PROJECTS]]' with ROLE in {ROLES}")
    if parts[0] == AGENT_ROLE and (len(parts) < 3 or agent_name_problem(parts[2])):
        raise AuthFileError(f"{where}: an agent token needs the agent's NAME: 'agent SHA256_HEX NAME [PROJECTS]'")
    projects = EVERY_PROJECT
    if len(parts) == 4:
        try:
            projects = Projects.parse(parts[3])
        except ValueError as exc:
            raise AuthFileError(f"{where}: PROJECTS must be '*' or comma-separated project names: {exc}") from None
    return Principal(parts[2] if len(parts) >= 3 else f"line {number}", parts[0], projects)


def load_auth_file(path: Path) -> dict[str, Principal]:
    """token sha256 hex -> principal. Raises AuthFileError naming the bad line."""
    tokens: dict[str, Principal] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthFileError(f"cannot read auth file {path}: {exc}") from exc
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        principal = _principal(path, number, parts)
        digest = parts[1].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise AuthFileError(f"{path}:{number}: the second field must be a SHA-256 hex digest")
        tokens[digest] = principal
    if not tokens:
        raise AuthFileError(f"auth file {path} has no tokens")
    return tokens


def identify(tokens: dict[str, Principal], metadata: dict[str, str]) -> Principal | None:
    """Whose token the call carries (None: no known token). For logs; `authorize` decides what is allowed."""
    scheme, _, token = metadata.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    return next((p for d, p in tokens.items() if hmac.compare_digest(d, digest)), None)


def authorize(tokens: dict[str, Principal], method: str, metadata: dict[str, str]) -> Principal | None:
    """The caller's principal, None for public methods; raises Unauthenticated / PermissionDenied."""
    if method.startswith(PUBLIC_PREFIXES):
        return None
    header = metadata.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing 'authorization: Bearer TOKEN' metadata")
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    principal = next((p for d, p in tokens.items() if hmac.compare_digest(d, digest)), None)
    if principal is None:
        raise Unauthenticated("unknown token")
    if (principal.role == "agent") != (method in AGENT_METHODS):
        # Agent tokens open agent sessions (and their FL tunnels) and nothing else; no other token may pose as an
        # agent.
        raise PermissionDenied(f"{principal.name} ({principal.role}) may not call {method}")
    allowed = METHODS_BY_ROLE.get(principal.role)
    if allowed is not None and method not in allowed:
        raise PermissionDenied(f"{principal.name} ({principal.role}) may not call {method}")
    return principal


def _deny(handler: Handler, status: grpc.Status) -> Handler:
    async def abort_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort(context, status)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort(context, status)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort_unary, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort_unary, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authorizes each call against the tokens in force as it starts; keeps streams in `table`, so that a reload of
    the auth file ends those of a removed token."""

    def __init__(self, table: TokenTable) -> None:
        self._table = table

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        from florist_grpc.api.token_table import token_digest  # runtime import: token_table imports this module

        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        watched = self._table.watch(handler, method, token_digest(metadata))
        if method == AGENT_CONNECT:
            # Authorized by its servicer with the same `authorize`: it waits for the hello (bounded: see
            # launch/handshakes.py), so that a refusal is logged with the agent's name, and checks that name
            # against the token's.
            return watched
        try:
            authorize(self._table.tokens or {}, method, metadata)
        except (Unauthenticated, PermissionDenied) as exc:
            return _deny(handler, to_status(exc))
        return watched
