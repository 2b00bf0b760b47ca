"""Jobs in the middle of StartTraining, and the stops that arrive for them meanwhile: the stop wins.

Between StartTraining's state commit and its answer, a StopTraining used to reach the follower before the job was
attached: the job was marked CANCELLED while the start went on, returned OK, and training ran to the end. Now a
stop for a starting job is handed to the start itself: at its next step (after attaching, after each launch,
while waiting for the FL server) the start ends the job CANCELLED, stopping everything it launched, and answers
ABORTED; the stop answers with that CANCELLED event. Why the stop wins: the caller who stops is the one who last
expressed an intent, and a job nobody wants should not consume a federation's machines; a start that answers
ABORTED is safe to retry with a new job, a training run that silently continues is not safe to ignore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from florist_grpc.domain.errors import Aborted, FailedPrecondition
from florist_grpc.domain.model import MetricsEvent

T = TypeVar("T")

STOP_MESSAGE = "stopped by StopTraining"


@dataclass
class Start:
    """One StartTraining in progress."""

    job_id: str
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when StartTraining's caller went away (a deadline, Ctrl-C) and the start goes on without it
    # (jobs/training.py): tests wait on it to let a start go on only once its caller is gone.
    caller_gone: asyncio.Event = field(default_factory=asyncio.Event)
    # The start's CANCELLED event (or None), for the StopTraining calls waiting on it.
    stopped: asyncio.Future[MetricsEvent | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


# Called at every step of a start with (the start, step name): tests use it to issue a stop at an exact step.
StepHook = Callable[[Start, str], Awaitable[None]]


async def _no_hook(start: Start, step: str) -> None:
    return None


class Starts:
    """The starts in progress on this control plane. Event-loop only."""

    def __init__(self) -> None:
        self._starts: dict[str, Start] = {}
        self.step_hook: StepHook = _no_hook

    @contextmanager
    def starting(self, job_id: str) -> Iterator[Start]:
        if job_id in self._starts:
            raise FailedPrecondition(f"job {job_id} is being started by another StartTraining")
        start = self._starts[job_id] = Start(job_id)
        try:
            yield start
        finally:
            self._starts.pop(job_id, None)
            if not start.stopped.done():
                start.stopped.set_result(None)

    async def unless_stopped(self, start: Start, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` (a launch on a site, the FL server getting ready), unless a stop comes first: then it
        is cancelled and Aborted raised at once, so a stop never waits on what a site or a server takes."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(start.stop_requested.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
        if not work.done() or work.cancelled():
            raise Aborted(f"job {start.job_id} was stopped by StopTraining while it was starting")
        return work.result()

    async def step(self, start: Start, name: str) -> None:
        """A point where the start may be stopped: raise Aborted if a stop came."""
        await self.step_hook(start, name)
        if start.stop_requested.is_set():
            raise Aborted(f"job {start.job_id} was stopped by StopTraining while it was starting")

    def of(self, job_id: str) -> Start | None:
        """The job's start in progress, if it is starting."""
        return self._starts.get(job_id)

    def request_stop(self, job_id: str) -> Start | None:
        """Hand a stop to the job's start, if it is starting; the caller then awaits `start.stopped`."""
        start = self.of(job_id)
        if start is not None:
            start.stop_requested.set()
        return start
