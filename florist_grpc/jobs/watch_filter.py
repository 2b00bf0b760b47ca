"""What a watch sends of a change: only jobs the caller sees, and, for a filter on state, a job entering the
watched set as ADDED and one leaving it as DELETED (as Kubernetes' watches with selectors do). A pure function.

Every field a filter may name but the state (model, strategy, project, owner) never changes, so whether a job
matched before a change is the filter applied to the job with its previous state.
"""

from __future__ import annotations

from dataclasses import replace

from florist_grpc.domain.model import ChangeType, JobChange
from florist_grpc.domain.projects import Caller
from florist_grpc.jobs.job_filter import JobFilter


def as_seen(change: JobChange, job_filter: JobFilter, caller: Caller) -> JobChange | None:
    """The change as this watch sends it, or None when it is none of the watch's business."""
    job = change.job
    if job is None or not caller.sees(job.project):
        return None
    if change.type is ChangeType.ADDED:
        return change if job_filter.matches(job) else None
    if change.type is ChangeType.DELETED:
        return change if job_filter.matches(job) else None
    now = job_filter.matches(job)
    before = job_filter.matches(replace(job, state=change.previous_state))
    if now and before:
        return change
    if now:
        return replace(change, type=ChangeType.ADDED)
    if before:
        return replace(change, type=ChangeType.DELETED)
    return None
