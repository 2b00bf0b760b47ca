"""One tracker's follower of the event log: on a thread of its own, it reads each job's events from the store
after its cursor, turns them into points (export/points.py), logs them, finishes the run with the job, and moves
the cursor once the tracker has acknowledged.

Nothing is logged twice: a point is logged once per (key, round), and a run that already existed tells what it
holds (`Opened.held`), so a crash between the tracker's acknowledgement and the cursor's move repeats nothing.
Nothing is lost: the cursor moves only after the acknowledgement, and the store keeps every event. A tracker that
does not answer is retried with backoff (export/backlog.py) while jobs run on; one that refuses something is told
once in the log, and the rest goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from florist_grpc.domain.model import Job, MetricsEvent
from florist_grpc.export.backlog import Backlog, Reachability
from florist_grpc.export.cursor import Cursor, Cursors, JsonState
from florist_grpc.export.points import JobReports, Point
from florist_grpc.export.tracker import JobEnd, Logged, Tracker, TrackerRefused, TrackerUnavailable
from florist_grpc.store.base import JobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# Events read from the store at once; a job with more waits its next turn, so every job moves on.
PAGE_EVENTS = 500
_EPOCH = datetime.fromtimestamp(0, UTC)

# The job's final model, verified, as a file for the length of the `with` (None: it saved none).
FinalModel = Callable[[Job], contextlib.AbstractContextManager[Path | None]]


@dataclass
class JobExport:
    """A job as its tracker's follower holds it: its reports up to `reports.sequence` (read), what is queued for
    the tracker, and the cursor (acknowledged)."""

    job: Job
    reports: JobReports
    cursor: Cursor
    # Every (key, round) logged or queued: each is sent once.
    logged: Logged
    pending: list[Point] = field(default_factory=list)
    end: MetricsEvent | None = None  # the terminal event, read and not yet acknowledged


class TrackerFollower:
    """Follows every job the backlog names into one tracker."""

    def __init__(self, tracker: Tracker, store: JobStore, cursors: Cursors, final_model: FinalModel) -> None:
        self.tracker = tracker
        self._store = store
        self.cursors = cursors
        self._final_model = final_model
        self.backlog = Backlog()
        self._reach = Reachability(tracker.title)
        self._jobs: dict[str, JobExport] = {}
        self._given_up: set[str] = set()  # refused or broken: not followed again until the control plane restarts
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"export-{tracker.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self, job_ids: list[str]) -> None:
        """These jobs have news (any thread; returns at once)."""
        self.backlog.add(job_ids)

    def stop(self, timeout: float) -> None:
        """Stop after the call under way (bounded by the tracker's own request timeout); what is not acknowledged
        is read again from the store after a restart."""
        self._stopping.set()
        self.backlog.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "%s: a call was still under way at shutdown; it is repeated after a restart", self.tracker.title
            )
        else:
            self.tracker.close()

    # --- the thread ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while (jobs := self.backlog.take()) is not None:
            for i, job_id in enumerate(jobs):
                if self._stopping.is_set():
                    return
                try:
                    more = self._advance(job_id)
                except TrackerUnavailable as exc:
                    self.backlog.add(jobs[i:])  # nothing is dropped: they are tried again after the wait
                    self._stopping.wait(self._reach.failed(str(exc), len(self.backlog)))
                    break
                except Exception:
                    log.exception(
                        "%s: exporting job %s failed; it is not exported further until the control plane restarts",
                        self.tracker.title,
                        job_id,
                    )
                    self._given_up.add(job_id)
                    self._jobs.pop(job_id, None)
                    continue
                if more:
                    self.backlog.add([job_id])

    def _call(self, call: Callable[..., T], *args: Any) -> T:
        """A call to the tracker; one that returns means it answers."""
        result = call(*args)
        self._reach.answered()
        return result

    def _advance(self, job_id: str) -> bool:
        """Read one page of the job's events, log them and move its cursor; whether more are waiting."""
        if job_id in self._given_up:
            return False
        export = self._jobs.get(job_id)
        if export is None:
            export = self._load(job_id)
            if export is None:
                return False
            self._jobs[job_id] = export
        more = False
        if not export.pending and export.end is None:
            events = self._store.read_events(job_id, export.reports.sequence, PAGE_EVENTS)
            if not events:
                return False
            self._take(export, events)
            more = len(events) == PAGE_EVENTS
        self._deliver(job_id, export)
        if export.cursor.done:
            del self._jobs[job_id]
            self.tracker.forget(job_id)
            return False
        return more

    def _load(self, job_id: str) -> JobExport | None:
        """The job from its cursor: its reports replayed up to it, and its run opened."""
        job = self._store.get_job(job_id)
        if job is None:
            return None
        kept = self.cursors.load(job_id)
        if kept is None or kept.target != self.tracker.target:
            kept = Cursor(self.tracker.target)
            # Saved before the tracker is asked anything: a job that ends while the tracker is down and the
            # control plane restarts is still found unfinished (Cursors.unfinished).
            self.cursors.save(job_id, kept)
        if kept.done:
            return None
        try:
            opened = self._call(self.tracker.open, job, kept.state)
        except TrackerRefused as exc:
            log.warning("%s refused the run of job %s (%s): it is not exported there", self.tracker.title, job_id, exc)
            self._given_up.add(job_id)
            return None
        reports = JobReports(len(job.clients))
        if opened.held is None:  # a run made now: everything goes in, from the job's first event
            cursor = Cursor(self.tracker.target, state=opened.state)
            logged: Logged = set()
        else:
            self._replay(reports, job_id, kept.sequence)
            logged = {(self.tracker.key(p.name), p.step) for p in reports.points(reports.all_rounds(), _EPOCH)}
            logged |= opened.held
            cursor = replace(kept, sequence=reports.sequence, state=opened.state)
        self.cursors.save(job_id, cursor)
        return JobExport(job, reports, cursor, logged)

    def _replay(self, reports: JobReports, job_id: str, upto: int) -> None:
        """Rebuild the reports as they were at sequence `upto` (acknowledged: logged already)."""
        while reports.sequence < upto:
            events = self._store.read_events(job_id, reports.sequence, min(PAGE_EVENTS, upto - reports.sequence))
            if not events:
                return
            for event in events:
                reports.apply(event)

    def _take(self, export: JobExport, events: list[MetricsEvent]) -> None:
        """Apply a page of events; queue each point not logged before (its first value: a round reported again,
        after a retry or a restart, is the same step)."""
        for event in events:
            rounds = export.reports.apply(event)
            for point in export.reports.points(rounds, event.time):
                key = (self.tracker.key(point.name), point.step)
                if key not in export.logged:
                    export.logged.add(key)
                    export.pending.append(point)
            if event.job_state.terminal:
                export.end = event
                return

    def _deliver(self, job_id: str, export: JobExport) -> None:
        """Log what is queued (batch by batch: an acknowledged batch is never sent again), finish the run if the
        job ended, then move the cursor."""
        state = export.cursor.state
        while export.pending:
            batch = export.pending[: self.tracker.batch_size]
            try:
                state = self._call(self.tracker.log, job_id, batch)
            except TrackerRefused as exc:
                log.warning(
                    "%s refused %d point(s) of job %s (%s): they are left out",
                    self.tracker.title,
                    len(batch),
                    job_id,
                    exc,
                )
            del export.pending[: len(batch)]
        if export.end is not None:
            state = self._finish(job_id, export, export.end, state)
        export.cursor = Cursor(self.tracker.target, export.reports.sequence, export.end is not None, state)
        self.cursors.save(job_id, export.cursor)

    def _finish(self, job_id: str, export: JobExport, end: MetricsEvent, state: JsonState) -> JsonState:
        job = self._store.get_job(job_id) or export.job
        with self._final_model(job) as model:
            ending = JobEnd(end.job_state, end.time, job.error_message, model)
            try:
                return self._call(self.tracker.finish, job_id, ending)
            except TrackerRefused as exc:
                log.warning("%s refused to close the run of job %s (%s)", self.tracker.title, job_id, exc)
                return state
