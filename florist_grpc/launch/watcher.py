"""One thread that notices when FL processes end, for every job (not a thread per process)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from florist_grpc.domain.model import Exit
from florist_grpc.launch.handles import ProcessHandle

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class ProcessWatcher:
    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self._on_exit: Callable[[str, str, Exit], None] = lambda job_id, source_key, status: None
        self._poll = poll_seconds
        self._lock = threading.Lock()
        self._watched: dict[tuple[str, str], ProcessHandle] = {}
        self._stopped = threading.Event()
        # Set when a process reports its own end (forked by the launcher pool): a pass runs at once, so exits
        # reach the follower in the order they happened, not in the order of one polling pass.
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="florist-process-watcher", daemon=True)

    def start(self, on_exit: Callable[[str, str, Exit], None]) -> None:
        """Watch from now on; `on_exit(job_id, source_key, status)` is called on the watcher's thread."""
        self._on_exit = on_exit
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._woken.set()
        self._thread.join(timeout=5)

    def watch(self, job_id: str, source_key: str, handle: ProcessHandle) -> None:
        with self._lock:
            self._watched[(job_id, source_key)] = handle
        notify = getattr(handle, "notify_exit", None)
        if notify is not None:
            notify(self._woken.set)

    def unwatch_job(self, job_id: str) -> None:
        with self._lock:
            for key in [k for k in self._watched if k[0] == job_id]:
                del self._watched[key]

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._woken.wait(self._poll)
            self._woken.clear()
            if self._stopped.is_set():
                return
            with self._lock:
                watched = list(self._watched.items())
            ended: list[tuple[float, str, str, Exit]] = []
            for (job_id, source_key), handle in watched:
                try:
                    status = handle.poll()
                except Exception:
                    log.exception("polling %s of job %s failed", source_key, job_id)
                    continue
                if status is None:
                    continue
                with self._lock:
                    if self._watched.get((job_id, source_key)) is not handle:
                        continue
                    del self._watched[(job_id, source_key)]
                exited_at = getattr(handle, "exited_at", None)
                ended.append((exited_at if exited_at is not None else time.monotonic(), job_id, source_key, status))
            # Causes before consequences: a process killed by a signal before those that exited on their own (the
            # client killed under a server that then failed, or the server killed under its clients), then in the
            # order they ended where the launcher knows it (the pool does).
            for _, job_id, source_key, status in sorted(ended, key=lambda e: (not _killed(e[3]), e[0])):
                self._on_exit(job_id, source_key, status)


def _killed(status: Exit) -> bool:
    return status.code is not None and status.code < 0
