"""Reads of jobs' persisted histories, shared by every stream that needs the same ones at once.

A replay to 2,000 readers of one job must not be 2,000 copies of its history. Events are read in pages aligned
on sequence numbers (page k holds sequences k*P+1 .. (k+1)*P), so readers anywhere in the same page share one
store read, its events and their encoding (Frames). A complete page (P events, or ending with the job's terminal
event) never changes: the last CACHED_PAGES of them are kept. A page still growing (a running job's last one) is
shared only between readers that subscribed to live events before its read began: an event persisted after the
read is then published after they subscribed, and reaches them live. At most STORE_READERS page reads run at
once, so a replay storm never fills the thread pool that other calls need. A job's state is shared the same way:
concurrent readers of one job share one `get_job`.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeVar

from florist_grpc.domain.model import JobState
from florist_grpc.metrics.frame import Frame, RecentFrames
from florist_grpc.store.base import JobStore

PAGE_EVENTS = 256
# Complete pages kept for the next readers: 64 x 256 events, a few MiB, whatever the number of readers.
CACHED_PAGES = 64
# Concurrent store reads for replays (the default thread pool has cpu_count + 4 threads, shared by every call).
STORE_READERS = 2

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """A job's state and the sequence of its last event."""

    state: JobState
    last_sequence: int

    def ended_by(self, sequence: int) -> bool:
        """Whether the job has ended with an event at or before `sequence`: nothing more will come after it."""
        return self.state.terminal and self.last_sequence <= sequence


@dataclass(frozen=True)
class Page:
    frames: tuple[Frame, ...]
    sequences: list[int] = field(repr=False)
    complete: bool


@dataclass(frozen=True)
class _Read:
    """A page read under way; a reader may join it only if it began after the reader's ticket."""

    ticket: int
    task: asyncio.Task[Page]


def _retrieved(task: asyncio.Task[T]) -> None:
    # Every joiner may have been cancelled: the result or error is then nobody's, and that is fine.
    if not task.cancelled():
        task.exception()


class SharedHistory:
    """Lives on the event loop."""

    def __init__(
        self,
        store: JobStore,
        page_events: int = PAGE_EVENTS,
        cached_pages: int = CACHED_PAGES,
        store_readers: int = STORE_READERS,
        frames: RecentFrames | None = None,
    ) -> None:
        self._store = store
        self._frames = frames if frames is not None else RecentFrames()
        self._page_events = page_events
        self._cached_pages = cached_pages
        self._store_readers = asyncio.Semaphore(store_readers)
        self._pages: OrderedDict[tuple[str, int], Page] = OrderedDict()
        self._reads: dict[tuple[str, int], _Read] = {}
        self._jobs: dict[str, asyncio.Task[Progress | None]] = {}
        self._tickets = itertools.count(1)

    @property
    def pages_cached(self) -> int:
        return len(self._pages)

    def ticket(self) -> int:
        """Take a ticket once subscribed to live events: reads begun after it miss nothing published before."""
        return next(self._tickets)

    async def progress(self, job_id: str) -> Progress | None:
        """How far the job is (None: no such job), read once for every concurrent caller. It may be a moment
        old: callers ask whether it has ended, which, once true, stays true."""
        read = self._jobs.get(job_id)
        if read is None:
            read = asyncio.ensure_future(asyncio.to_thread(self._read_progress, job_id))
            self._jobs[job_id] = read
            read.add_done_callback(lambda _: self._jobs.pop(job_id, None))
            read.add_done_callback(_retrieved)
        return await asyncio.shield(read)

    def _read_progress(self, job_id: str) -> Progress | None:
        # Only two numbers of the job are kept: a stream that held the whole job (its accumulated reports:
        # thousands of objects for a long job) for its lifetime made 2,000 replays cost gigabytes.
        job = self._store.get_job(job_id)
        return None if job is None else Progress(job.state, job.last_sequence)

    async def frames_after(self, job_id: str, after: int, ticket: int) -> tuple[tuple[Frame, ...], bool]:
        """The events of the page holding sequence `after + 1`, from that one on, as of a read begun after `ticket`
        was taken, and whether that page is complete. After an incomplete page there is nothing more to read:
        whatever was persisted since was published after the ticket's subscription."""
        index = after // self._page_events
        page = await self._page(job_id, index, ticket)
        return page.frames[bisect.bisect_right(page.sequences, after) :], page.complete

    async def _page(self, job_id: str, index: int, ticket: int) -> Page:
        key = (job_id, index)
        while True:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
                return page
            read = self._reads.get(key)
            if read is None:
                read = _Read(next(self._tickets), asyncio.ensure_future(self._read(job_id, index)))
                self._reads[key] = read
                read.task.add_done_callback(functools.partial(self._landed, key, read))
            page = await asyncio.shield(read.task)
            # Any read will do for a complete page. An incomplete one is good only if it began after the caller
            # subscribed; else the caller reads again (sharing that read with the others in the same case).
            if page.complete or read.ticket > ticket:
                return page
            if self._reads.get(key) is read:  # landed, its callback not yet run: never await it again
                del self._reads[key]

    async def _read(self, job_id: str, index: int) -> Page:
        async with self._store_readers:
            start = index * self._page_events
            events = await asyncio.to_thread(self._store.read_events, job_id, start, self._page_events)
        complete = len(events) == self._page_events or bool(events and events[-1].job_state.terminal)
        return Page(tuple(self._frames.of(e) for e in events), [e.sequence for e in events], complete)

    def _landed(self, key: tuple[str, int], read: _Read, task: asyncio.Task[Page]) -> None:
        if self._reads.get(key) is read:
            del self._reads[key]
        if task.cancelled() or task.exception() is not None:
            return
        page = task.result()
        if page.complete:
            self._pages[key] = page
            while len(self._pages) > self._cached_pages:
                self._pages.popitem(last=False)
