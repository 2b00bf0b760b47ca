"""One thread that asks Slurm about every FL process it runs for us: one `scontrol show job -o` per pass, at most
once a second, and only while there is something to watch; and the scancels, sent from the same thread, so the
follower (which calls terminate/kill) never waits on a Slurm command.

The last state seen of each job is kept: Slurm purges a job's record MinJobAge after it ends.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

from florist_grpc.domain.model import Exit
from florist_grpc.launch.slurm.commands import SlurmJob, exit_of, parse_jobs, scancel_command

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# Slurm commands take ~18 s to fail while slurmctld is down.
COMMAND_TIMEOUT_SECONDS = 25.0
# A job Slurm no longer knows though we never saw it end (it ended and was purged while we were down).
PURGED = "ended while the control plane was not watching (Slurm no longer knows job {})"


class SlurmMonitor:
    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self._poll = poll_seconds
        self._lock = threading.Condition()
        self._watched: set[str] = set()
        self._last: dict[str, SlurmJob] = {}
        self._exits: dict[str, Exit] = {}
        self._cancels: dict[str, bool] = {}  # job id -> kill
        self._stopped = False
        self.polls = 0  # how many scontrol calls were made (tests: one per pass, whatever the number of jobs)
        self._thread = threading.Thread(target=self._run, name="florist-slurm-monitor", daemon=True)
        self._thread.start()

    def watch(self, job_id: str) -> None:
        with self._lock:
            self._watched.add(job_id)
            self._lock.notify_all()

    def exit_of(self, job_id: str) -> Exit | None:
        with self._lock:
            return self._exits.get(job_id)

    def job(self, job_id: str) -> SlurmJob | None:
        """The last state seen of a job."""
        with self._lock:
            return self._last.get(job_id)

    def wait_exit(self, job_id: str, timeout: float) -> Exit | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while job_id not in self._exits and not self._stopped and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return self._exits.get(job_id)

    def cancel(self, job_id: str, kill: bool = False) -> None:
        """scancel it on the monitor's thread (returns at once)."""
        with self._lock:
            if job_id not in self._exits:
                self._cancels[job_id] = self._cancels.get(job_id, False) or kill
                self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._thread.join(timeout=COMMAND_TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        next_poll = 0.0
        while True:
            with self._lock:
                while not self._stopped and not self._cancels and not (self._watched - self._exits.keys()):
                    self._lock.wait()
                if self._stopped:
                    return
                cancels, self._cancels = self._cancels, {}
            for kill in (False, True):
                if ids := sorted(i for i, k in cancels.items() if k is kill):
                    self._command(scancel_command(ids, kill))
            wait = next_poll - time.monotonic()
            if wait > 0:
                with self._lock:
                    self._lock.wait(wait)  # a cancel or a new job wakes it; the poll still waits its turn
                continue
            next_poll = time.monotonic() + self._poll
            self._pass()

    def _pass(self) -> None:
        with self._lock:
            pending = self._watched - self._exits.keys()
        if not pending:
            return
        output = self._command(["scontrol", "show", "job", "-o"])
        self.polls += 1
        if output is None:
            return  # Slurm unreachable: ask again next pass, nothing is concluded
        jobs = parse_jobs(output)
        with self._lock:
            for job_id in pending:
                job = jobs.get(job_id)
                if job is None:
                    last = self._last.get(job_id)
                    self._exits[job_id] = (exit_of(last) if last else None) or Exit(None, PURGED.format(job_id))
                    continue
                self._last[job_id] = job
                if (status := exit_of(job)) is not None:
                    self._exits[job_id] = status
            self._lock.notify_all()

    def _command(self, argv: list[str]) -> str | None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s failed: %s", argv[0], exc)
            return None
        if done.returncode != 0:
            # scontrol with no job at all says so and exits 0; anything else is Slurm being unreachable.
            log.warning("%s exited %d: %s", " ".join(argv[:3]), done.returncode, done.stderr.strip()[:300])
            return None
        return done.stdout
