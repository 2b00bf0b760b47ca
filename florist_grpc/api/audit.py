"""The audit trail as one interceptor: one log line per mutating RPC, saying who did what to which job, and how
it ended. Logger `florist_grpc.audit`; with `--log-format json` the fields are JSON keys (who, role, method,
job_id, code, peer): `who` is the token's NAME and `role` its role, or `anonymous` and `none` when the server runs
without an auth file or the token is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from florist_grpc.api.auth import identify
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


def job_of(call: CallEnd) -> str:
    """The job a call acted on: the request's job_id, else the job it returned (CreateJob)."""
    job_id = getattr(call.request, "job_id", "")
    if not job_id and call.response is not None and call.response.HasField("job"):
        job_id = call.response.job.id
    return str(job_id)


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
        who, role = (principal.name, principal.role) if principal else ("anonymous", "none")
        caller = f"{who} ({role})" if principal else who

        def ended(call: CallEnd) -> None:
            fields = {
                "who": who,
                "role": role,
                "method": method,
                "job_id": job_of(call),
                "code": call.code.name,
                "peer": call.context.peer() if call.context is not None else "",
            }
            log.info("audit %s %s job=%s -> %s", caller, method, fields["job_id"] or "-", call.code.name, extra=fields)

        return observe(handler, method, CallHooks(ended))
