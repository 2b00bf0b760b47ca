"""Followers of the event log that write elsewhere: each job's metrics into the experiment trackers people already
use (MLflow: `serve --mlflow-tracking-uri`; TensorBoard: `serve --tensorboard-dir`).

Each tracker has a follower thread of its own (export/follower.py) with its own cursor per job, so a slow or
unreachable tracker never slows a job, another tracker or the reports' path; the job store stays the source of
truth, and a tracker that comes back (or a control plane that restarts) catches up from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from florist_grpc.config import Settings
from florist_grpc.domain.model import JobState, MetricsEvent
from florist_grpc.export.cursor import Cursors
from florist_grpc.export.final_model import final_models
from florist_grpc.export.follower import TrackerFollower
from florist_grpc.export.tracker import Tracker
from florist_grpc.store.base import JobStore

# How long stopping waits for a tracker's call under way (MLflow's request timeout bounds it).
STOP_SECONDS = 5.0


def trackers_of(settings: Settings) -> list[Tracker]:
    """The trackers `serve`'s flags name (`--mlflow-tracking-uri`, `--tensorboard-dir`); none = no export."""
    trackers: list[Tracker] = []
    if settings.mlflow_tracking_uri:
        from florist_grpc.export.mlflow_tracker import MlflowTracker  # imports MLflow (1-2 s): only when used

        trackers.append(MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_experiment))
    if settings.tensorboard_dir is not None:
        from florist_grpc.export.tensorboard_tracker import TensorBoardTracker

        trackers.append(TensorBoardTracker(settings.tensorboard_dir))
    return trackers


class Exports:
    """Every tracker's follower. The hub's observer (`published`) tells them which jobs have news."""

    def __init__(self, trackers: list[Tracker], store: JobStore, jobs_dir: Path, model_dir: Callable[[str], Path]):
        self.followers = [
            TrackerFollower(tracker, store, Cursors(jobs_dir, tracker.name), final_models(model_dir))
            for tracker in trackers
        ]

    @classmethod
    def started(
        cls, settings: Settings, store: JobStore, jobs_dir: Path, model_dir: Callable[[str], Path]
    ) -> Exports | None:
        """The followers of the trackers `settings` name, started (blocking: call it off the event loop), with
        the jobs in progress and the runs a previous session left incomplete as their first news; None if no
        tracker is named."""
        trackers = trackers_of(settings)
        if not trackers:
            return None
        exports = cls(trackers, store, jobs_dir, model_dir)
        in_progress = [job.id for job in store.jobs_in_state(JobState.IN_PROGRESS)]
        for follower in exports.followers:
            follower.start()
            follower.notify(sorted({*in_progress, *follower.cursors.unfinished()}))
        return exports

    def published(self, events: list[MetricsEvent]) -> None:
        """The hub's observer, on the event loop: it only notes which jobs have news; each follower's thread
        reads their events from the store."""
        job_ids = list(dict.fromkeys(event.job_id for event in events))
        for follower in self.followers:
            follower.notify(job_ids)

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop(STOP_SECONDS)


__all__ = ["Exports", "trackers_of"]
