"""Replays of a long history to many readers at once: every stream completes in order, from shared store reads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from florist_grpc.domain.model import MetricsEvent
from florist_grpc.metrics.history import PAGE_EVENTS
from florist_grpc.metrics.hub import EventHub
from florist_grpc.metrics.stream import MetricsFeed, job_frames
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing.history import create_finished
from florist_grpc.testing.plane import ControlPlaneThread

LONG_JOB_EVENTS = 1400


class CountingStore(SqliteStore):
    """The real SQLite store, counting the event reads that reach it."""

    reads = 0

    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        self.reads += 1
        return super().read_events(job_id, after_sequence, limit)


def test_300_concurrent_replays_of_a_long_job_all_complete_in_order(plane: ControlPlaneThread) -> None:
    job_id = create_finished(plane.plane.store, LONG_JOB_EVENTS)
    reader = [sys.executable, "-m", "tests.metrics.replay_reader", plane.address, job_id, "300"]
    root = Path(__file__).resolve().parents[2]  # where `tests` is a package, whatever directory pytest runs from
    finished = subprocess.run(reader, capture_output=True, text=True, timeout=180, check=True, cwd=root)
    received = json.loads(finished.stdout)
    every_event = list(range(1, LONG_JOB_EVENTS + 1))
    assert [i for i, sequences in enumerate(received) if sequences != every_event] == []


def test_concurrent_replays_of_one_job_share_their_store_reads(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "db")
    job_id = create_finished(store, LONG_JOB_EVENTS)
    store.reads = 0

    async def scenario() -> list[list[int]]:
        feed = MetricsFeed.over(store, EventHub(asyncio.get_running_loop()))

        async def one() -> list[int]:
            return [frame.sequence async for frame in job_frames(feed, job_id, 0)]

        return await asyncio.gather(*(one() for _ in range(200)))

    received = asyncio.run(scenario())
    assert all(sequences == list(range(1, LONG_JOB_EVENTS + 1)) for sequences in received)
    pages = -(-LONG_JOB_EVENTS // PAGE_EVENTS)
    assert store.reads <= 2 * pages  # not 200 readers x 6 pages


def test_readers_share_one_encoding_of_each_event(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    job_id = create_finished(store, 600)

    async def scenario() -> set[int]:
        feed = MetricsFeed.over(store, EventHub(asyncio.get_running_loop()))

        async def one() -> list[int]:
            return [id(frame) async for frame in job_frames(feed, job_id, 0)]

        streams = await asyncio.gather(*(one() for _ in range(50)))
        return {len(set(column)) for column in zip(*streams, strict=True)}

    assert asyncio.run(scenario()) == {1}  # at each position, every reader got the very same Frame
