"""The audit trail as one interceptor: one log line per mutating RPC, saying who did what to which job, and how
it ended. Logger `florist_grpc.audit`; with `--log-format json` the fields are JSON keys (who, role, method,
job_id, code, peer): `who` is the token's NAME and `role` its role, or `anonymous` and `none` when the server runs
without an auth file or the token is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from florist_grpc.api.auth import Principal, identify
from florist_grpc.api.call_observer import CallEnd, CallHooks, Handler, observe
from florist_grpc.api.token_table import TokenTable

log = logging.getLogger("florist_grpc.audit")

MUTATING = frozenset(
    {
        "/florist.v1.JobService/CreateJob",
        "/florist.v1.JobService/DeleteJob",
        "/florist.v1.TrainingService/StartTraining",
        "/florist.v1.TrainingService/StopTraining",
    }
)


def acted_on(request: Any, response: Any) -> str:
    """The job a call acted on: the request's job_id, else the job it returned (CreateJob)."""
    job_id = getattr(request, "job_id", "")
    if not job_id and response is not None and response.HasField("job"):
        job_id = response.job.id
    return str(job_id)


def record(principal: Principal | None, method: str, job_id: str, code: str, peer: str) -> None:
    """Write the audit line of one mutating call (both transports: gRPC here, the browser's in connect_auth.py)."""
    who, role = (principal.name, principal.role) if principal else ("anonymous", "none")
    caller = f"{who} ({role})" if principal else who
    fields = {"who": who, "role": role, "method": method, "job_id": job_id, "code": code, "peer": peer}
    log.info("audit %s %s job=%s -> %s", caller, method, job_id or "-", code, extra=fields)


class AuditInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, table: TokenTable) -> None:
        self._table = table  # its tokens None: the server runs without authentication; everyone is `anonymous`

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if method not in MUTATING:
            return handler
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        tokens = self._table.tokens
        principal = identify(tokens, metadata) if tokens is not None else None

        def ended(call: CallEnd) -> None:
            peer = call.context.peer() if call.context is not None else ""
            record(principal, method, acted_on(call.request, call.response), call.code.name, peer)

        return observe(handler, method, CallHooks(ended))
