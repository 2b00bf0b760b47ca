"""Fetching reports' text from Redis in one round trip, without ever reading a report over the size bound whole.

Each source's report is read with GETRANGE bounded to one byte past the bound, all of a batch in one write: a
report within the bound comes back whole, and one that comes back longer than the bound is over it and is set
aside (its STRLEN, asked then, says by how much). That is one round trip a read where STRLEN-then-MGET took two,
and a report cannot grow past the bound between a size check and its read. A source whose last report was over
the bound is asked its STRLEN first, as before, and read only if it fits again: a site that keeps writing a huge
report costs a length a read, not the bound's worth of bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from florist_grpc.metrics.report_bounds import oversized
from florist_grpc.store.base import SetAside

log = logging.getLogger(__name__)

# Commands in one write: a batch of more sources takes several round trips. Each reply is at most the bound (plus
# one byte), so no single reply is larger than one report may be.
CHUNK = 1000

Fetched = bytes | SetAside | None


class ReportFetch:
    """Reads reports' text from Redis within a size bound. Used by one thread only (the ingest's)."""

    def __init__(self, client: redis.Redis, max_report: int) -> None:
        self._redis = client
        self._max = max_report
        self._over: set[str] = set()  # sources whose last report read was over the bound: STRLEN first

    def read(self, uuids: Sequence[str]) -> list[Fetched]:
        """The text of the report under each uuid: None if absent, empty or not a string, SetAside if it is over
        the size bound (such a report is not read whole). Raises redis.RedisError."""
        out: list[Fetched] = [None] * len(uuids)
        for start in range(0, len(uuids), CHUNK):
            self._read_chunk(uuids, range(start, min(start + CHUNK, len(uuids))), out)
        return out

    def forget(self, uuids: Iterable[str]) -> None:
        """These sources are no longer read."""
        self._over.difference_update(uuids)

    def _read_chunk(self, uuids: Sequence[str], indices: range, out: list[Fetched]) -> None:
        commands = [("STRLEN", uuids[i]) if uuids[i] in self._over else self._bounded(uuids[i]) for i in indices]
        fits: list[int] = []  # sources set aside last time whose report fits now: read them
        over: list[int] = []  # reports that came back longer than the bound: set aside, their size asked
        for i, reply in zip(indices, self._round_trip(commands), strict=True):
            if _absent(reply):
                self._over.discard(uuids[i])
            elif isinstance(reply, int):  # the size of a report set aside last time
                if (reason := oversized(reply, self._max)) is None:
                    fits.append(i)
                else:
                    log.warning("report %s set aside unread: %s", uuids[i], reason)
                    out[i] = SetAside(reason)
            else:
                self._take(uuids[i], reply, i, out, over)
        if fits:  # bounded too: the report may have grown past the bound since its STRLEN
            for i, reply in zip(fits, self._round_trip([self._bounded(uuids[i]) for i in fits]), strict=True):
                if not _absent(reply):
                    self._take(uuids[i], reply, i, out, over)
        if over:
            sizes = self._round_trip([("STRLEN", uuids[i]) for i in over])
            for i, size in zip(over, sizes, strict=True):
                # It was longer than the bound when read: if it was replaced since, say at least that much.
                known = max(size if isinstance(size, int) else 0, self._max + 1)
                reason = oversized(known, self._max)
                assert reason is not None
                log.warning("report %s set aside: %s", uuids[i], reason)
                out[i] = SetAside(reason)
                self._over.add(uuids[i])

    def _take(self, uuid: str, reply: bytes | str, i: int, out: list[Fetched], over: list[int]) -> None:
        raw = reply.encode() if isinstance(reply, str) else reply
        if len(raw) > self._max:
            over.append(i)
        else:
            out[i] = raw
            self._over.discard(uuid)

    def _bounded(self, uuid: str) -> tuple[str, ...]:
        """The report's first bound + 1 bytes: all of it when it fits, and proof that it does not otherwise."""
        return ("GETRANGE", uuid, "0", str(self._max))

    def _round_trip(self, commands: list[tuple[str, ...]]) -> list[Any]:
        """Send `commands` in one write and read their replies, an error reply as its exception in its place: a
        redis-py pipeline without its per-command bookkeeping, which cost the follower more CPU than the round
        trip itself (profiled: 100 us a read). Raises redis.RedisError when the connection fails, or when Redis
        refuses a command other than as WRONGTYPE (the whole read is retried)."""
        pool = self._redis.connection_pool
        connection: Any = pool.get_connection()  # redis-py leaves Connection's methods untyped
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            connection.disconnect()  # replies left unread must not answer the next command on this connection
            raise
        finally:
            pool.release(connection)
        for reply in replies:
            if isinstance(reply, Exception) and not _wrong_type(reply):
                raise reply
        return replies


def _wrong_type(reply: Any) -> bool:
    return isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE")


def _absent(reply: Any) -> bool:
    """No report: the key is absent or empty (both read as b''), or holds no string (WRONGTYPE)."""
    return not reply or _wrong_type(reply)  # None, 0 (STRLEN), b'' (GETRANGE); an error reply is truthy
