"""The watch's splice of the changes log and the live fan-out (jobs/watching.py), on a real SqliteStore."""

from __future__ import annotations

import asyncio
from pathlib import Path

from florist_grpc.domain.model import ChangeType
from florist_grpc.domain.projects import LOCAL_CALLER
from florist_grpc.jobs.job_filter import JobFilter
from florist_grpc.jobs.watch_hub import WatchHub
from florist_grpc.jobs.watching import Watch, watch_changes
from florist_grpc.store.sqlite import SqliteStore
from tests.store.test_store_contract import new_job


def test_a_watch_that_lagged_catches_up_from_the_log_in_order_and_once(tmp_path: Path) -> None:
    async def run() -> list[int]:
        store = SqliteStore(tmp_path / "s.sqlite3")
        hub = WatchHub(asyncio.get_running_loop(), capacity=2)  # overflows at once
        store.on_change(hub.publish_threadsafe)
        changes = watch_changes(store, hub, Watch(LOCAL_CALLER, JobFilter(), 0), bookmark_seconds=30)
        assert (await anext(changes)).type is ChangeType.BOOKMARK
        await asyncio.to_thread(lambda: [store.create_job(new_job(f"j{i}")) for i in range(50)])
        for _ in range(1000):  # the loop delivers what the writer published: the queue overflows
            if any(s.lagging for s in hub._subscribers):
                break
            await asyncio.sleep(0)
        assert any(s.lagging for s in hub._subscribers)
        seen = []
        while len(seen) < 50:
            change = await asyncio.wait_for(anext(changes), 10)
            seen.append(change.revision)
        await changes.aclose()
        return seen

    assert asyncio.run(run()) == list(range(1, 51))


def test_changes_made_before_a_watch_subscribed_come_from_the_log_before_later_ones(tmp_path: Path) -> None:
    async def run() -> list[int]:
        store = SqliteStore(tmp_path / "s.sqlite3")
        hub = WatchHub(asyncio.get_running_loop())
        for i in range(5):  # before the hub hears of anything: only the log has them
            store.create_job(new_job(f"old{i}"))
        store.on_change(hub.publish_threadsafe)
        changes = watch_changes(store, hub, Watch(LOCAL_CALLER, JobFilter(), 2), bookmark_seconds=30)
        assert (await anext(changes)).revision == 2
        replayed = [(await anext(changes)).revision for _ in range(3)]
        await asyncio.to_thread(store.create_job, new_job("new"))
        live = (await asyncio.wait_for(anext(changes), 10)).revision
        await changes.aclose()
        return [*replayed, live]

    assert asyncio.run(run()) == [3, 4, 5, 6]
