"""The queue's dispatcher on a real SqliteStore, with the start of a job replaced by a stand-in that records when
it commits: jobs that leave the queue together commit in queue order even when the first one's checks are the
slowest, and nothing wakes the dispatcher but a change that frees capacity."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from florist_grpc.domain.model import JobState
from florist_grpc.jobs.admission import Limits
from florist_grpc.jobs.queue import Admission, QueueDispatcher, Turn
from florist_grpc.store.sqlite import SqliteStore
from tests.store.test_store_contract import new_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def queued(store: SqliteStore, job_id: str, minute: int) -> None:
    store.create_job(new_job(job_id))
    store.transition(job_id, {JobState.NOT_STARTED}, JobState.QUEUED, T0 + timedelta(minutes=minute))


def test_jobs_leaving_together_commit_in_queue_order_and_a_freed_slot_starts_the_next(tmp_path: Path) -> None:
    async def run() -> list[str]:
        store = SqliteStore(tmp_path / "s.sqlite3")
        for minute, job_id in enumerate(["a", "b", "c"]):
            queued(store, job_id, minute)
        admission = Admission(store, Limits(max_running_jobs=2), dict)
        committed: list[str] = []
        check_seconds = {"a": 0.3, "b": 0.0, "c": 0.0}  # the first job's checks are the slowest

        async def start_queued(job_id: str, turn: Turn) -> bool:
            await asyncio.sleep(check_seconds[job_id])  # stands in for the checks (a data probe)
            await turn.wait()
            async with admission.lock:
                await asyncio.to_thread(store.transition, job_id, {JobState.QUEUED}, JobState.IN_PROGRESS, T0)
                committed.append(job_id)
            return True

        async def end_queued(job_id: str, why: str) -> None:
            raise AssertionError(f"{job_id} ended: {why}")

        dispatcher = QueueDispatcher(admission, start_queued, end_queued)
        store.on_change(dispatcher.on_change)
        dispatcher.start()
        for _ in range(500):  # a and b fit; c waits for a slot
            if len(committed) == 2:
                break
            await asyncio.sleep(0.01)
        assert committed == ["a", "b"]
        await asyncio.to_thread(store.transition, "a", {JobState.IN_PROGRESS}, JobState.FINISHED_SUCCESSFULLY, T0)
        for _ in range(500):
            if len(committed) == 3:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        return committed

    assert asyncio.run(run()) == ["a", "b", "c"]
