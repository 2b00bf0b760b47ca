"""Stops a site had not confirmed when its client's job ended: retried in the background, never waited for.

A job's end does not wait on a site (jobs/ending.py `stopped`): a client whose agent has not confirmed its stop
within the stop grace is recorded as such (`store.stops`, and the job's client shows `stop_confirmed` false) and
its stop is re-sent every stop grace until the site confirms it (the client's exit arrives) or its agent stays
away past the grace (then it is given up on, still unconfirmed). The records outlive a restart (jobs/recovery.py
resumes them) and the job itself (they are keyed by the client's uuid). Owned by the follower thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from florist_grpc.domain.errors import Unavailable
from florist_grpc.launch.handles import ProcessHandle
from florist_grpc.store.base import JobStore, UnconfirmedStop

log = logging.getLogger(__name__)


@dataclass
class _Retry:
    stop: UnconfirmedStop
    handle: ProcessHandle
    resend_at: float


class UnconfirmedStops:
    def __init__(self, store: JobStore, resend_seconds: float) -> None:
        self._store = store
        self._resend = resend_seconds
        self._retries: dict[str, _Retry] = {}  # by client uuid

    def record(self, stops: Sequence[tuple[UnconfirmedStop, ProcessHandle]]) -> None:
        """Remember these stops (in the store too) and go on sending them."""
        if not stops:
            return
        try:
            self._store.stops.record([stop for stop, _ in stops])
        except Unavailable as exc:  # retried all the same; only a restart meanwhile would forget them
            log.warning("could not record %d unconfirmed stop(s): %s", len(stops), exc)
        self.resume(stops, time.monotonic() + self._resend)  # each was sent at the stop grace, just now
        for stop, _ in stops:
            log.warning(
                "job %s: agent %s has not confirmed the stop of client %d (%s); retrying it in the background",
                stop.job_id,
                stop.agent,
                stop.client_index,
                stop.client_uuid,
            )

    def resume(self, stops: Sequence[tuple[UnconfirmedStop, ProcessHandle]], resend_at: float = 0.0) -> None:
        """Go on sending stops already in the store (after a restart: at once)."""
        for stop, handle in stops:
            self._retries[stop.client_uuid] = _Retry(stop, handle, resend_at)

    def tick(self) -> None:
        """Settle the stops whose outcome is known; send the others again when due."""
        now = time.monotonic()
        for client_uuid, retry in list(self._retries.items()):
            status = retry.handle.poll()
            if status is not None:
                # Gone as its site says (its exit, or its agent reconnected without it): confirmed. Lost with an
                # agent that stayed away: given up on, and it stays unconfirmed.
                try:
                    self._store.stops.settle(client_uuid, confirmed=not status.lost)
                except Unavailable:
                    continue  # the store is down: settled at a later tick
                del self._retries[client_uuid]
                verdict = "given up on: " + status.describe() if status.lost else "confirmed"
                log.info("job %s: the stop of client %s %s", retry.stop.job_id, client_uuid, verdict)
            elif now >= retry.resend_at:
                retry.handle.terminate()
                retry.resend_at = now + self._resend

    def __len__(self) -> int:
        return len(self._retries)
