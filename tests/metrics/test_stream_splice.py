"""The replay/live splice of StreamMetrics, against a real store and hub, with a subscriber that lags."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.domain.model import SERVER_SOURCE, Client, Job, JobState, MetricsEvent
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.stream import job_events
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def started_job(store: SqliteStore) -> None:
    store.create_job(Job("j", "MLP", "FEDAVG", "SGD", "FEDAVG", {}, [Client("/d")], NOW))
    store.transition("j", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, NOW)


def append(store: SqliteStore, hub: EventHub, n: int) -> MetricsEvent:
    event = store.append_report_changes(
        [ReportChange("j", SERVER_SOURCE, {"n": n - 1} if n > 1 else {}, {"n": n}, NOW)]
    )[0]
    assert event is not None
    hub.publish(event)
    return event


def test_a_lagging_subscriber_catches_up_from_the_store_with_bounded_memory(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        store = SqliteStore(tmp_path / "db")
        started_job(store)
        hub = EventHub(asyncio.get_running_loop(), capacity=4)
        stream = job_events(store, hub, "j", 0)
        first = await anext(stream)  # subscribed and replayed: now it stops reading
        assert first.sequence == 1
        for n in range(1, 101):  # 100 events while the reader is stalled; its queue holds at most 4
            append(store, hub, n)
            subscription = next(iter(hub._subscribers["j"]))
            assert subscription.queued() <= 4
        terminal = store.transition("j", {JobState.IN_PROGRESS}, JobState.FINISHED_SUCCESSFULLY, NOW)
        assert terminal is not None
        hub.publish(terminal)
        rest = [e.sequence async for e in stream]
        assert hub.subscriber_count() == 0
        return [first.sequence, *rest]

    assert asyncio.run(scenario()) == list(range(1, 103))


def test_events_published_out_of_order_are_delivered_in_order(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        store = SqliteStore(tmp_path / "db")
        started_job(store)
        hub = EventHub(asyncio.get_running_loop())
        stream = job_events(store, hub, "j", 0)
        assert (await anext(stream)).sequence == 1
        change = ReportChange("j", SERVER_SOURCE, {}, {"a": 1}, NOW)
        store_only = store.append_report_changes([change])[0]  # persisted, not yet published
        later = append(store, hub, 5)
        received = [(await anext(stream)).sequence, (await anext(stream)).sequence]
        assert store_only is not None
        hub.publish(store_only)  # arrives late: already delivered from the store, so dropped as a duplicate
        terminal = store.transition("j", {JobState.IN_PROGRESS}, JobState.CANCELLED, NOW)
        assert terminal is not None and later.sequence == 3
        hub.publish(terminal)
        received += [e.sequence async for e in stream]
        return received

    assert asyncio.run(scenario()) == [2, 3, 4]


def test_a_subscriber_whose_reader_was_cancelled_still_receives(tmp_path: Path) -> None:
    # The hub's queue for one stream is a deque and a waiter: a reader cancelled while waiting (its call ended)
    # leaves a cancelled waiter behind, which the next event must step over, not trip on.
    async def scenario() -> list[int]:
        store = SqliteStore(tmp_path / "db")
        started_job(store)
        hub = EventHub(asyncio.get_running_loop(), capacity=4)
        subscription = hub.subscribe("j")
        waiting = asyncio.create_task(subscription.next())
        await asyncio.sleep(0)  # one loop step: the task runs to its await (no timed wait)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        append(store, hub, 1)
        append(store, hub, 2)
        return [(await asyncio.wait_for(subscription.next(), 5)).sequence for _ in range(2)]

    assert asyncio.run(scenario()) == [2, 3]
