"""The bounds on what a site's reports may take (config.Limits): one report's size, one job's stored history.

A report over its bound is set aside (never read into memory; the source's last stored report stands) and the
job's events say so once, in a notice. A job whose stored history reached its bound has every further report
change refused, and fails naming the bound (jobs/ending.py): a production run must not go on losing its history
without anyone seeing it. The decisions are pure functions; JobHistory only counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from florist_grpc.domain.model import Source, SourceKind


@dataclass(frozen=True)
class HistoryFull:
    """A report change refused because its job's stored history reached its bound."""

    message: str


def size_text(n: int) -> str:
    """A byte count as people read it: `1.5 MiB`, `64 MiB`, `512 KiB`, `300 bytes`."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def source_name(source: Source) -> str:
    """The source as the job's messages name it."""
    if source.kind is SourceKind.CLIENT:
        return f"FL client {source.client_index} ({source.client_uuid})"
    return "FL server" if source.kind is SourceKind.SERVER else "job"


def oversized(size: int, limit: int) -> str | None:
    """Why a report of `size` bytes is set aside, or None if it fits."""
    if size <= limit:
        return None
    bound = f"{size_text(limit)}, Limits.report_max_bytes"
    return f"it is {size_text(size)} ({size} bytes), over the bound of one report ({bound})"


def set_aside_notice(source: Source, reason: str) -> str:
    """The notice a job's events carry when a source's report is set aside."""
    return f"a report of the {source_name(source)} was set aside: {reason}; its last stored report stands"


def history_full(stored: int, limit: int) -> str | None:
    """Why a job's further report changes are refused (and the job fails), or None while it has room."""
    if stored < limit:
        return None
    return (
        f"the job's stored history reached {size_text(stored)}, the bound of one job's history "
        f"({size_text(limit)}, Limits.job_history_max_bytes): its further reports were refused"
    )


class JobHistory:
    """How many bytes of events each followed job has stored. `stored_bytes(job_id)` is asked once per job, the
    first time it is seen (after a restart its history is not empty). One thread only."""

    def __init__(self, limit: int, stored_bytes: Callable[[str], int]) -> None:
        self._limit = limit
        self._stored_bytes = stored_bytes
        self._bytes: dict[str, int] = {}

    def _of(self, job_id: str) -> int:
        if job_id not in self._bytes:
            self._bytes[job_id] = self._stored_bytes(job_id)
        return self._bytes[job_id]

    def refusal(self, job_id: str) -> HistoryFull | None:
        """HistoryFull if the job's further report changes must be refused."""
        message = history_full(self._of(job_id), self._limit)
        return None if message is None else HistoryFull(message)

    def add(self, job_id: str, n: int) -> None:
        self._bytes[job_id] = self._of(job_id) + n

    def forget(self, job_id: str) -> None:
        self._bytes.pop(job_id, None)
