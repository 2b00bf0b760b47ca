"""What an experiment tracker does for the follower (export/follower.py): open a job's run, log points, finish it.

A tracker is called from its follower's thread only, one call at a time. It raises TrackerUnavailable when it
cannot be reached (the follower retries with backoff, and the job is not affected) and TrackerRefused when it
refused what it was sent (retrying would be refused again: the follower says so and goes on).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from florist_grpc.domain.model import Job, JobState
from florist_grpc.export.cursor import JsonState
from florist_grpc.export.points import Point

# (tracker key, round): one value each, logged once.
Logged = set[tuple[str, int]]


class TrackerUnavailable(Exception):
    """The tracker could not be reached; the same call may succeed later."""


class TrackerRefused(Exception):
    """The tracker refused the call; sent again, it would be refused again."""


@dataclass(frozen=True)
class Opened:
    """A job's run, ready: the tracker's state to keep in the cursor, and what the run already held. `held` is
    None for a run made now (nothing is in it: everything is logged from the job's first event); otherwise the
    (key, round) pairs the run holds beyond the cursor's (a crash may have come after the tracker had them and
    before the cursor moved)."""

    state: JsonState
    held: Logged | None


@dataclass(frozen=True)
class JobEnd:
    """How the job ended, and its final model (verified, named `round-<n>.safetensors`) if it saved one."""

    state: JobState
    time: datetime
    error_message: str
    model: Path | None


class Tracker(abc.ABC):
    """One experiment tracker (MLflow, TensorBoard) as its follower drives it."""

    # The name of its cursors (`jobs/<id>/export/<name>.json`) and of its thread.
    name: str
    # Where it writes: a cursor kept for another target starts over.
    target: str
    # How the follower's warnings name it ("MLflow at http://...").
    title: str
    # At most this many points per `log` call.
    batch_size: int = 1000

    def key(self, name: str) -> str:
        """The tracker's name for a metric (a point is logged once per key and round)."""
        return name

    @abc.abstractmethod
    def open(self, job: Job, state: JsonState) -> Opened:
        """Find or make the job's run (with its parameters and tags); `state` is what the cursor kept, if any."""

    @abc.abstractmethod
    def log(self, job_id: str, points: list[Point]) -> JsonState:
        """Log the points in the job's run, acknowledged when it returns; the state to keep in the cursor."""

    @abc.abstractmethod
    def finish(self, job_id: str, end: JobEnd) -> JsonState:
        """Close the job's run as it ended (status, final model); the state to keep in the cursor."""

    def forget(self, job_id: str) -> None:  # noqa: B027 - optional hook: trackers without per-job resources
        """Release what the tracker holds for the job (its run is complete, or the job was deleted)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything (the control plane stops)."""
