"""The JobStore contract. Every backend must pass tests/store/test_store_contract.py.

The event log is the write-ahead log of a job: every state change and every report change is appended as an
event with the next contiguous sequence, and the job's materialised view (state, accumulated reports) advances
with it atomically. That one rule gives compare-and-set starts, gap-free streams and crash recovery.

Beside it, the changes log: every job-level change (created, state, launch, client state, current round, deleted;
not every report) gets the next store-wide revision, strictly increasing and persisted, and the job carries the
revision of its last change. The log keeps at least the last `keep_changes` changes; a watch resuming from an
older revision is OUT_OF_RANGE (list again).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from florist_grpc.domain import merge_patch
from florist_grpc.domain.model import (
    JOB_SOURCE,
    ClientState,
    Job,
    JobChange,
    JobState,
    JsonObject,
    Launch,
    MetricsEvent,
    Source,
)


@dataclass(frozen=True)
class ReportChange:
    """A source's report moving from `previous` (what was last persisted) to `report`. `patch` is the merge patch
    between them when the caller has it already (the ingest finds it from what changed in the report's text);
    `merge_patch()` is that patch, or the diff of the two reports."""

    job_id: str
    source: Source
    previous: JsonObject
    report: JsonObject
    time: datetime
    patch: JsonObject | None = field(default=None, compare=False, repr=False)

    def merge_patch(self) -> JsonObject:
        return merge_patch.diff(self.previous, self.report) if self.patch is None else self.patch


@dataclass(frozen=True)
class SetAside:
    """A change the store cannot hold (see rules.unstorable): nothing of it was written, the rest of its batch
    was. The caller keeps its previous baseline for that source, so later reports carry the change again."""

    reason: str


@dataclass(frozen=True)
class PageCursor:
    """Position after the last job of a page: jobs are ordered by (create_time, id) descending."""

    create_time: datetime
    job_id: str


@dataclass(frozen=True)
class UnconfirmedStop:
    """A stop sent to a site for one of its clients, not confirmed by the site when the client's job ended."""

    client_uuid: str
    agent: str
    job_id: str
    client_index: int


class SiteStops(abc.ABC):
    """The unconfirmed stops, retried until their sites confirm them: kept across restarts, and after their job is
    deleted (they are keyed by the client's uuid). Safe to call from any thread."""

    @abc.abstractmethod
    def record(self, stops: Sequence[UnconfirmedStop]) -> None:
        """Remember each stop and mark its client's stop unconfirmed in its job (again: no change)."""

    @abc.abstractmethod
    def pending(self) -> list[UnconfirmedStop]:
        """Every stop recorded and not settled."""

    @abc.abstractmethod
    def settle(self, client_uuid: str, confirmed: bool) -> None:
        """Forget the stop; `confirmed` (its site confirmed it) also marks it confirmed in its job, if the job still
        exists. Not confirmed: given up on (its agent stayed away past the grace), and it stays unconfirmed."""


class JobStore(abc.ABC):
    """Persistence of jobs, their event logs and their accumulated reports. Safe to call from any thread."""

    stops: SiteStops  # the unconfirmed stops of sites' clients

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise florist_grpc.domain.errors.Unavailable if the backend cannot be reached."""

    @abc.abstractmethod
    def create_job(self, job: Job, request_id: str = "") -> Job:
        """Store a new job; with a request_id seen before, return that job instead (idempotent retry)."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job | None:
        """The job with its accumulated reports, or None."""

    @abc.abstractmethod
    def list_jobs(
        self, page_size: int, after: PageCursor | None, state: JobState, projects: Collection[str] | None = None
    ) -> list[Job]:
        """Up to page_size jobs strictly after `after`, newest first; state UNSPECIFIED = any; only jobs of
        `projects` unless it is None."""

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> bool:
        """Delete the job and its events unless it is IN_PROGRESS or QUEUED; False if it does not exist.

        Raises florist_grpc.domain.errors.FailedPrecondition while the job is IN_PROGRESS or QUEUED.
        """

    @abc.abstractmethod
    def transition(
        self,
        job_id: str,
        from_states: Collection[JobState],
        to_state: JobState,
        time: datetime,
        error_message: str = "",
        reason: str = "",
    ) -> MetricsEvent | None:
        """Atomically move the job from one of `from_states` to `to_state` and append the SOURCE_KIND_JOB event.

        Returns the event, or None if the job was not in one of `from_states` (or does not exist).
        Entering IN_PROGRESS sets start_time; entering a terminal state sets end_time; entering QUEUED sets
        queue_time. `reason` goes into the event's patch (why the job waits in the queue, say).
        """

    @abc.abstractmethod
    def append_report_changes(self, changes: Sequence[ReportChange]) -> Sequence[MetricsEvent | SetAside | None]:
        """For each change, append an event whose patch turns `previous` (the persisted report) into `report`,
        and store `report`; one transaction where the backend has them. The result holds each change's event,
        in order, or None, changing nothing, when there is no change or the job is not IN_PROGRESS (a terminal
        event is always the last one), or SetAside, changing nothing, when the change itself cannot be stored
        (a data error, never an outage: an unreachable store raises Unavailable for the whole call). Callers
        pass the report they last persisted, so a retry after a crash finds no change and appends nothing: the
        append is idempotent. Only the change is written."""

    @abc.abstractmethod
    def read_events(self, job_id: str, after_sequence: int, limit: int = 1000) -> list[MetricsEvent]:
        """Events with sequence > after_sequence, in order, at most `limit`."""

    @abc.abstractmethod
    def record_launch(self, job_id: str, launch: Launch) -> None:
        """Save the uuids, processes and start time of a started job."""

    @abc.abstractmethod
    def set_client_state(self, job_id: str, index: int, state: ClientState, error_message: str = "") -> None:
        """Record the lifecycle state of one client (a job-level change). O(1) in the job's clients: every client
        of a job ends, so anything more makes a job's ends quadratic (store/client_deltas.py)."""

    @abc.abstractmethod
    def jobs_in_state(self, state: JobState) -> list[Job]:
        """Every job in `state` (restart recovery re-attaches the IN_PROGRESS ones)."""

    @abc.abstractmethod
    def count_jobs_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state (states without jobs may be left out); for the metrics endpoint."""

    # --- the changes log ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def current_revision(self) -> int:
        """The revision of the latest change (0 before the first). Every change at or below it is visible to
        reads that start after this returns."""

    @abc.abstractmethod
    def read_changes(self, after_revision: int, limit: int = 1000) -> list[JobChange]:
        """Changes with revision > after_revision, in order, at most `limit`. Raises
        florist_grpc.domain.errors.OutOfRange when changes right after `after_revision` are no longer kept, or
        when it is beyond the current revision."""

    @abc.abstractmethod
    def on_change(self, listener: Callable[[JobChange], None]) -> None:
        """Call `listener` with every change this store object commits, right after the commit and in revision
        order, from the writing thread: it must return at once (the live path of WatchJobs)."""

    def close(self) -> None:  # noqa: B027 - optional hook: backends without connections need not override it
        """Release connections."""


__all__ = ["JOB_SOURCE", "JobStore", "PageCursor", "ReportChange", "SetAside", "SiteStops", "UnconfirmedStop"]
