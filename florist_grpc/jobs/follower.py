"""The follower: one thread that owns the runtime state of every IN_PROGRESS job.

Report reads (metrics/report_reader.py, notified by the listener), process exits (from the watcher), stops and
failures (from the API) all arrive as work items on one queue and are handled in order by one thread. That
serialisation is what makes the event log of a job consistent: the last report of every source is read and
persisted *before* the terminal state event, so a terminal event is always a job's last one. Nothing here blocks
on a process: stopping sends SIGTERM, and later ticks escalate to SIGKILL and finish the job once every process
is gone -- or, for a site's client, had the stop grace to go: a site never holds a job's end, and the stops it has
not confirmed are retried in the background (jobs/unconfirmed_stops.py). The listener, the reader and the
watcher are built by the composition root (server.py) and handed in.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import FailedPrecondition, job_not_found, quote
from florist_grpc.domain.model import SERVER_SOURCE, Exit, JobState, JsonObject, MetricsEvent
from florist_grpc.jobs.ending import ProcessFacts, Stopping, Verdict, client_end, judge, stopped
from florist_grpc.jobs.run import Ending, JobRun, RunningProcess
from florist_grpc.jobs.unconfirmed_stops import UnconfirmedStops
from florist_grpc.launch.agent_process import AgentProcess
from florist_grpc.launch.handles import ProcessHandle
from florist_grpc.launch.watcher import ProcessWatcher
from florist_grpc.metrics.listener import ReportListener
from florist_grpc.metrics.publisher import EventPublisher
from florist_grpc.metrics.report_reader import ReportReader
from florist_grpc.store.base import JobStore, UnconfirmedStop

log = logging.getLogger(__name__)

# How often the follower looks at endings in progress (SIGKILL after the grace) and at lingering clients.
TICK_SECONDS = 0.2


class JobFollower:
    def __init__(
        self,
        store: JobStore,
        reader: ReportReader,
        listener: ReportListener,
        watcher: ProcessWatcher,
        publisher: EventPublisher,
        timeouts: Timeouts,
        retire: Callable[[list[str]], None] = lambda uuids: None,
    ) -> None:
        self._store = store
        self._reader = reader
        self._listener = listener  # notifies the reader (wired so in server.py); subscribed to from here
        self._watcher = watcher
        self._publisher = publisher
        self._retire = retire  # a job's terminal event is persisted: expire its runs' keys, drop their users
        self._stop_grace = timeouts.process_stop_grace_seconds
        self._client_exit_grace = timeouts.client_exit_grace_seconds
        self._unconfirmed = UnconfirmedStops(store, self._stop_grace)
        self._work: queue.Queue[Callable[[], None]] = queue.Queue()
        self._runs: dict[str, JobRun] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="florist-job-follower", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        # Reads are work items: ordered with exits and endings. A job whose reports are refused is judged again.
        self._reader.start(self._work.put, refused=self._reports_refused)
        self._listener.start()
        self._watcher.start(self._process_exited)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._work.put(lambda: None)
        self._thread.join(timeout=10)
        self._watcher.stop()
        self._listener.stop()
        self._reader.close()

    # --- called from other threads ------------------------------------------------------------------------------

    def attach(self, job_id: str, processes: dict[str, RunningProcess], reports: dict[str, JsonObject]) -> None:
        """Start following a job: subscribe to its sources and watch its processes (handles may come later).
        `reports` holds what each source (by key) last had persisted, when re-attached after a restart."""

        def work() -> None:
            run = JobRun(job_id, processes)
            self._runs[job_id] = run
            for key, process in processes.items():
                self._reader.follow(job_id, process.source, process.uuid, reports.get(key, {}))
                if process.handle is not None:
                    self._watcher.watch(job_id, key, process.handle)
            self._listener.follow(p.uuid for p in processes.values())

        self._work.put(work)

    def set_handle(self, job_id: str, source_key: str, handle: ProcessHandle) -> None:
        def work() -> None:
            run = self._runs.get(job_id)
            if run is None:
                handle.kill()  # the job ended while this process was being launched: it must not outlive it
                return
            run.processes[source_key].handle = handle
            self._watcher.watch(job_id, source_key, handle)
            if run.ending is not None:
                handle.terminate()

        self._work.put(work)

    def end(self, job_id: str, state: JobState, message: str = "") -> concurrent.futures.Future[MetricsEvent | None]:
        """Stop every process of the job and move it to `state` once they are gone. The future gets the event."""
        future: concurrent.futures.Future[MetricsEvent | None] = concurrent.futures.Future()

        def work() -> None:
            run = self._runs.get(job_id)
            if run is None:
                job = self._store.get_job(job_id)
                if job is None:
                    future.set_exception(job_not_found(job_id))
                elif job.state is JobState.IN_PROGRESS and state.terminal:
                    # In progress but not followed here (another replica, or a start that never attached).
                    future.set_result(self._finish_unfollowed(job_id, state, message))
                else:
                    refusal = f"job {quote(job_id)} is {job.state.name}, not IN_PROGRESS"
                    future.set_exception(FailedPrecondition(refusal, reason="JOB_NOT_RUNNING"))
                return
            self._begin_ending(run, state, message, future)

        self._work.put(work)
        return future

    def resume_stops(self, stops: list[tuple[UnconfirmedStop, ProcessHandle]]) -> None:
        """Go on retrying stops that sites had not confirmed before the control plane restarted."""
        self._work.put(lambda: self._unconfirmed.resume(stops))

    def stopped_server(self, job_id: str) -> bool:
        """True once the job's end stopped its FL server (the end, not the server, says why). Any thread: the
        flag only ever turns True."""
        run = self._runs.get(job_id)
        return run is not None and run.server.stopped_by_us

    def _process_exited(self, job_id: str, source_key: str, status: Exit) -> None:
        self._work.put(lambda: self._on_exit(job_id, source_key, status))

    def _reports_refused(self, job_id: str) -> None:
        """The job's stored history is full (metrics/report_bounds.py): judge it again, as a work item of its own
        (this is called in the middle of a read)."""

        def work() -> None:
            if (run := self._runs.get(job_id)) is not None:
                self._evaluate(run)

        self._work.put(work)

    # --- the follower thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        while not self._stopped.is_set():
            deferred = self._reader.next_due()
            wake = next_tick if deferred is None else min(next_tick, deferred)
            try:
                item = self._work.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    item()
                self._reader.release_due(time.monotonic())
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_SECONDS
                    self._tick()
            except Exception:
                log.exception("follower work item failed")

    def _on_exit(self, job_id: str, key: str, status: Exit) -> None:
        run = self._runs.get(job_id)
        if run is None:
            return
        process = run.processes[key]
        self._record_exit(run, process, status)
        if key != SERVER_SOURCE.key:
            server = run.server
            # A client that fails may have lost its server: if the server is gone too (`poll_now`: a pool reports
            # exits in the order it reaps them), judge with its exit, though the watcher has not told it yet.
            if (
                not status.clean
                and server.exit is None
                and server.handle is not None
                and (server_status := getattr(server.handle, "poll_now", server.handle.poll)()) is not None
            ):
                self._record_exit(run, server, server_status)
            self._record_client_end(run, process)
        self._evaluate(run)

    def _record_exit(self, run: JobRun, process: RunningProcess, status: Exit) -> None:
        process.exit = status
        if not status.clean:
            tail = process.handle.log_tail() if process.handle is not None else ""
            process.failure = status.describe() + (f"; last log lines:\n{tail}" if tail else "")
        # Its late keys, and the server's latest (a client's end is judged with it), which the throttle may hold.
        self._reader.read(dict.fromkeys([process.uuid, run.server.uuid]))

    def _record_client_end(self, run: JobRun, process: RunningProcess, job_end: JobState | None = None) -> None:
        """Record the client's terminal state as the ending policy decides it (jobs/ending.py `client_end`)."""
        training_complete = "fit_end" in self._reader.persisted(run.server.uuid)
        end = client_end(self._facts(run, process), training_complete, job_end)
        if end is not None:
            self._store.set_client_state(run.job_id, process.source.client_index, end.state, end.message)

    def _facts(self, run: JobRun, process: RunningProcess) -> ProcessFacts:
        return ProcessFacts(
            process.name,
            process.exit,
            self._reader.persisted(process.uuid),
            process.failure,
            launched=process.handle is not None,
            stopped=process.stopped_by_us,
            connection_lost=process.handle.connection_lost() if isinstance(process.handle, AgentProcess) else "",
        )

    def _evaluate(self, run: JobRun) -> None:
        """Apply the ending policy (jobs/ending.py) to what the job's processes did and reported."""
        if run.ending is not None:
            if stopped([self._stopping(p) for p in run.processes.values()], run.ending.past_grace):
                self._finish(run)
            return
        since = None if run.server_done_at is None else time.monotonic() - run.server_done_at
        verdict = judge(
            self._facts(run, run.server),
            [self._facts(run, c) for c in run.clients],
            since,
            self._client_exit_grace,
            refused=self._reader.refusal(run.job_id),
        )
        if isinstance(verdict, Verdict):
            self._begin_ending(run, verdict.state, verdict.message)
        elif verdict.server_done and run.server_done_at is None:
            run.server_done_at = time.monotonic()

    def _begin_ending(
        self,
        run: JobRun,
        state: JobState,
        message: str,
        future: concurrent.futures.Future[MetricsEvent | None] | None = None,
    ) -> None:
        if run.ending is None:
            run.ending = Ending(state, message, time.monotonic() + self._stop_grace)
            for process in run.processes.values():
                if process.exit is None and process.handle is not None:
                    process.stopped_by_us = True
                    process.handle.terminate()
        if future is not None:
            run.ending.done.append(future)
        self._evaluate(run)

    def _tick(self) -> None:
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.ending is not None and now >= run.ending.kill_at:
                for process in run.processes.values():
                    if process.exit is None and process.handle is not None:
                        process.handle.kill()  # a site's client: its stop, again
                run.ending.kill_at = now + self._stop_grace
                run.ending.past_grace = True
                self._evaluate(run)  # the sites had their grace: they no longer hold the end
            elif run.ending is None and run.server_done_at is not None:
                self._evaluate(run)
        self._unconfirmed.tick()

    @staticmethod
    def _stopping(process: RunningProcess) -> Stopping:
        gone = process.exit is not None or process.handle is None
        return Stopping(gone, on_site=process.handle is not None and bool(process.handle.ref.agent_address))

    def _finish(self, run: JobRun) -> None:
        assert run.ending is not None
        self._reader.read(p.uuid for p in run.processes.values())  # what each source reported last
        unconfirmed: list[tuple[UnconfirmedStop, ProcessHandle]] = []
        for client in run.clients:
            if client.exit is None:  # never launched, or its site has not confirmed its stop: not left RUNNING
                self._record_client_end(run, client, run.ending.state)
                if client.handle is not None:  # launched at a site: its stop goes on being retried
                    agent = client.handle.ref.agent_address
                    stop = UnconfirmedStop(client.uuid, agent, run.job_id, client.source.client_index)
                    unconfirmed.append((stop, client.handle))
        self._unconfirmed.record(unconfirmed)
        event = self._finish_unfollowed(run.job_id, run.ending.state, run.ending.message)
        self._detach(run)
        for future in run.ending.done:
            if not future.done():
                future.set_result(event)
        why = f": {run.ending.message[:200]}" if run.ending.message else ""
        log.info("job %s ended %s%s", run.job_id, run.ending.state.name, why)

    def _detach(self, run: JobRun) -> None:
        self._runs.pop(run.job_id, None)
        self._watcher.unwatch_job(run.job_id)
        uuids = [p.uuid for p in run.processes.values()]
        self._reader.forget(uuids)
        self._listener.unfollow(uuids)
        self._retire(uuids)

    def _finish_unfollowed(self, job_id: str, state: JobState, message: str) -> MetricsEvent | None:
        """Move an IN_PROGRESS job to `state` and publish the event (the last step of every ending)."""
        event = self._store.transition(job_id, {JobState.IN_PROGRESS}, state, datetime.now(UTC), message)
        if event is not None:
            self._publisher.publish([event])
        return event
