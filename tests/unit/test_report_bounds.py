"""The bounds on reports, case by case (pure: no Redis, no store)."""

from __future__ import annotations

import pytest

from florist_grpc.config import Limits
from florist_grpc.domain.model import SERVER_SOURCE, Source, SourceKind
from florist_grpc.metrics.report_bounds import (
    HistoryFull,
    JobHistory,
    history_full,
    oversized,
    set_aside_notice,
    size_text,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"), (1536, "1.5 KiB"), (MiB, "1 MiB"), (64 * MiB, "64 MiB")],
)
def test_sizes_read_as_people_read_them(n: int, text: str) -> None:
    assert size_text(n) == text


def test_a_report_up_to_the_bound_fits_and_one_byte_more_is_set_aside_saying_by_how_much() -> None:
    assert oversized(MiB, MiB) is None
    assert oversized(0, MiB) is None
    assert oversized(MiB + 1, MiB) == (
        "it is 1 MiB (1048577 bytes), over the bound of one report (1 MiB, Limits.report_max_bytes)"
    )


def test_a_notice_names_the_source_and_says_the_last_stored_report_stands() -> None:
    client = Source(SourceKind.CLIENT, 1, "u1")
    assert set_aside_notice(client, "it is not JSON") == (
        "a report of the FL client 1 (u1) was set aside: it is not JSON; its last stored report stands"
    )
    assert set_aside_notice(SERVER_SOURCE, "x").startswith("a report of the FL server was set aside: x")


def test_a_history_has_room_below_its_bound_and_none_at_it() -> None:
    assert history_full(64 * MiB - 1, 64 * MiB) is None
    assert history_full(64 * MiB, 64 * MiB) == (
        "the job's stored history reached 64 MiB, the bound of one job's history (64 MiB, "
        "Limits.job_history_max_bytes): its further reports were refused"
    )


def test_a_jobs_history_is_counted_from_what_it_had_stored_and_refused_once_full() -> None:
    asked: list[str] = []

    def stored(job_id: str) -> int:
        asked.append(job_id)
        return 900 if job_id == "restarted" else 0

    history = JobHistory(1000, stored)
    assert history.refusal("new") is None
    history.add("new", 999)
    assert history.refusal("new") is None
    history.add("new", 1)
    refused = history.refusal("new")
    assert isinstance(refused, HistoryFull) and "Limits.job_history_max_bytes" in refused.message
    assert history.refusal("restarted") is None  # 900 stored before: 100 left
    history.add("restarted", 100)
    assert history.refusal("restarted") is not None
    assert asked == ["new", "restarted"]  # the store is asked once per job
    history.forget("new")
    assert history.refusal("new") is None and asked[-1] == "new"  # forgotten: asked again


def test_the_default_bounds_fit_together() -> None:
    limits = Limits()
    assert limits.report_max_bytes == MiB and limits.job_history_max_bytes == 64 * MiB
    # A report a little over its bound still reaches the ingest (to be set aside with a notice) from an agent and
    # from Redis; Redis holds hundreds of reports at the bound.
    assert limits.report_max_bytes < limits.relayed_report_max_bytes <= limits.redis_max_value_bytes
    assert limits.redis_max_memory_bytes >= 256 * limits.report_max_bytes
