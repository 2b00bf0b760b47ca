"""Shared reads of a job's history: a read is shared only with readers it cannot have missed anything for."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState, MetricsEvent
from florist_grpc.metrics.history import SharedHistory
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing.history import create_finished

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class HeldStore(SqliteStore):
    """Reads events as asked, then holds the answer until released: a read that lands late."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.read_done = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        events = super().read_events(job_id, after_sequence, limit)
        self.reads += 1
        self.read_done.set()
        assert self.release.wait(10)
        return events


def running_job(store: SqliteStore, reports: int) -> None:
    store.create_job(Job("j", "MLP", "FEDAVG", "SGD", "FEDAVG", {}, [Client("/d")], NOW))
    store.transition("j", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, NOW)
    for n in range(1, reports + 1):
        store.append_report_changes([ReportChange("j", SERVER_SOURCE, {"n": n - 1}, {"n": n}, NOW)])


def test_an_incomplete_page_read_before_a_reader_subscribed_is_read_again_for_it(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "db")
    store.release.set()
    running_job(store, 2)  # events 1..3
    store.release.clear()

    async def scenario() -> tuple[list[int], list[int]]:
        history = SharedHistory(store)
        early = asyncio.ensure_future(history.frames_after("j", 0, history.ticket()))
        await asyncio.to_thread(store.read_done.wait, 10)  # its read has queried the store, not yet answered
        await asyncio.to_thread(store.append_report_changes, [ReportChange("j", SERVER_SOURCE, {}, {"x": 1}, NOW)])
        late = asyncio.ensure_future(history.frames_after("j", 0, history.ticket()))  # subscribed after that read
        await asyncio.sleep(0)
        store.release.set()
        (early_frames, _), (late_frames, _) = await asyncio.gather(early, late)
        return [f.sequence for f in early_frames], [f.sequence for f in late_frames]

    assert asyncio.run(scenario()) == ([1, 2, 3], [1, 2, 3, 4])
    assert store.reads == 2


def test_a_complete_page_read_under_way_is_shared_with_later_readers(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "db")
    store.release.set()
    job_id = create_finished(store, 10)
    store.release.clear()
    store.reads = 0

    async def scenario() -> list[list[int]]:
        history = SharedHistory(store)
        first = asyncio.ensure_future(history.frames_after(job_id, 0, history.ticket()))
        await asyncio.to_thread(store.read_done.wait, 10)
        later = [asyncio.ensure_future(history.frames_after(job_id, n, history.ticket())) for n in (3, 9)]
        await asyncio.sleep(0)
        store.release.set()
        pages = await asyncio.gather(first, *later)
        return [[f.sequence for f in frames] for frames, complete in pages if complete]

    assert asyncio.run(scenario()) == [list(range(1, 11)), list(range(4, 11)), [10]]
    assert store.reads == 1


def test_cached_pages_are_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    job_id = create_finished(store, 100)

    async def scenario() -> int:
        history = SharedHistory(store, page_events=10, cached_pages=3)
        for after in range(0, 100, 10):
            await history.frames_after(job_id, after, history.ticket())
        return history.pages_cached

    assert asyncio.run(scenario()) == 3
