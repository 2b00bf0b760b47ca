"""Who each call comes from, as the use cases need it: the caller's name, role and projects, and the projects an
agent's token bounds its site to. The auth interceptor has already refused calls without a valid token."""

from __future__ import annotations

from typing import Any

import grpc

from florist_grpc.api.auth import identify
from florist_grpc.api.token_table import TokenTable
from florist_grpc.domain.errors import Unauthenticated
from florist_grpc.domain.projects import AGENT_ROLE, EVERY_PROJECT, LOCAL_CALLER, Caller, Projects


class Callers:
    def __init__(self, table: TokenTable) -> None:
        """`table`: the auth file's tokens as they are now; without an auth file every call is LOCAL_CALLER and
        every site runs any job."""
        self._table = table

    def of(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller of this call."""
        tokens = self._table.tokens
        if tokens is None:
            return LOCAL_CALLER
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        principal = identify(tokens, metadata)
        if principal is None:  # the interceptor lets no such call through; never act as nobody
            raise Unauthenticated("unknown token")
        return principal

    def site_projects(self, agent: str) -> Projects | None:
        """The projects whose jobs may run clients on agent `agent`'s site; None when no token of the auth file
        belongs to that agent (it cannot connect at all)."""
        tokens = self._table.tokens
        if tokens is None:
            return EVERY_PROJECT
        return next((p.projects for p in tokens.values() if p.role == AGENT_ROLE and p.name == agent), None)
