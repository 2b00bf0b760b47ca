"""ListJobs beyond what a store indexes: filtered pages and the BASIC view."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from florist_grpc.domain.model import Job, JobState
from florist_grpc.jobs.job_filter import JobFilter
from florist_grpc.store.base import JobStore, PageCursor

# Jobs read from the store per round trip while looking for matches of a filter.
SCAN_BATCH = 200


def filtered_page(
    store: JobStore,
    size: int,
    after: PageCursor | None,
    state: JobState,
    job_filter: JobFilter,
    projects: Collection[str] | None = None,
) -> tuple[list[Job], bool]:
    """Up to `size` jobs after `after` matching `state` and `job_filter`, and whether more follow.

    A filter that names one state is pushed down to the store; anything else is matched here while scanning
    pages in the store's order, so page tokens (the position after the last job returned) work as without one.
    Only jobs of `projects` (None: every project) are read at all.
    """
    pushed = job_filter.only_state
    if pushed is not None:
        if state not in (JobState.UNSPECIFIED, pushed):
            return [], False
        jobs = store.list_jobs(size + 1, after, pushed, projects)
        return jobs[:size], len(jobs) > size
    matches: list[Job] = []
    while True:
        batch = store.list_jobs(SCAN_BATCH, after, state, projects)
        matches += [job for job in batch if job_filter.matches(job)]
        if len(matches) > size or len(batch) < SCAN_BATCH:
            return matches[:size], len(matches) > size
        last = batch[-1]
        after = PageCursor(last.create_time, last.id)


def without_metrics(job: Job) -> Job:
    """The BASIC view: the job without its accumulated reports (they are most of its size)."""
    return replace(job, server_metrics={}, clients=[replace(c, metrics={}) for c in job.clients])
