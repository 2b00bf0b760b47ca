"""Reports an agent relays for its clients enter the control plane's Redis as a local client's would.

FLorist's protocol, unchanged: SET the whole report under the run uuid, then PUBLISH the uuid; the listener,
follower and store take it from there exactly as for a client on this machine.
"""

from __future__ import annotations

import json
import logging

from florist_grpc import redis_clients
from florist_grpc.limits import Limits

log = logging.getLogger(__name__)

# A relayed report larger than this is dropped (this bounds what an agent can write; one a little over the
# bound of one report is stored, and the ingest sets it aside with a notice: config.Limits).
MAX_REPORT_BYTES = Limits.relayed_report_max_bytes


class ReportRelay:
    def __init__(self, redis_url: str) -> None:
        self._redis = redis_clients.async_client(redis_url, 5.0)

    async def relay(self, agent: str, client_uuid: str, report_json: str) -> None:
        """Store and announce one client's whole report (dropped, logged, if it is not a sane JSON object)."""
        try:
            if len(report_json) > MAX_REPORT_BYTES or not isinstance(json.loads(report_json), dict):
                raise ValueError("not a JSON object of a sensible size")
        except ValueError as exc:
            log.warning("agent %s sent an unusable report for %s (%s); dropped", agent, client_uuid, exc)
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(client_uuid, report_json)
            pipe.publish(client_uuid, client_uuid)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()
