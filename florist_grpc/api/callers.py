"""Who each call comes from, as the use cases need it: the caller's name, role and projects, and the projects an
agent's token bounds its site to. The auth interceptor has already refused calls without a valid token."""

from __future__ import annotations

from typing import Any

import grpc

from florist_grpc.api.auth import Principal, identify
from florist_grpc.domain.errors import Unauthenticated
from florist_grpc.domain.projects import AGENT_ROLE, EVERY_PROJECT, LOCAL_CALLER, Caller, Projects


class Callers:
    def __init__(self, tokens: dict[str, Principal] | None) -> None:
        """`tokens` from the auth file; None without one (every call is LOCAL_CALLER, every site runs any job)."""
        self._tokens = tokens
        self._sites = {p.name: p.projects for p in (tokens or {}).values() if p.role == AGENT_ROLE}

    def of(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller of this call."""
        if self._tokens is None:
            return LOCAL_CALLER
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        principal = identify(self._tokens, metadata)
        if principal is None:  # the interceptor lets no such call through; never act as nobody
            raise Unauthenticated("unknown token")
        return principal

    def site_projects(self, agent: str) -> Projects | None:
        """The projects whose jobs may run clients on agent `agent`'s site; None when no token of the auth file
        belongs to that agent (it cannot connect at all)."""
        if self._tokens is None:
            return EVERY_PROJECT
        return self._sites.get(agent)
