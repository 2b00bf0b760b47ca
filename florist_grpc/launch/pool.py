"""LauncherPool: the control plane's (or an agent's) handle on one launcher pool process (launch/pool_process.py).

Anything that launches local FL processes can start one; `launch.handles.start_local` uses it when installed.
One reader thread per pool turns the pool's notices into per-child facts: launched, ready, exited. A pool that is
down, still importing past its bound, or silent on a launch is "unavailable": the caller spawns instead and the
pool is restarted in the background.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from florist_grpc.config import Timeouts
from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.launch.process import fl_environment
from florist_grpc.launch.readiness import ReadySignal

log = logging.getLogger(__name__)


class PoolUnavailable(Exception):
    """The pool cannot launch right now; spawn instead."""


class PoolRefused(PoolUnavailable):
    """The pool could not fork this one (it said why); it is still up for the others."""


# Why a forked process's exit code is unknown once its pool died: only its parent (the pool) could learn it.
ORPHANED_EXIT = "ended (exit code unknown: the launcher pool that forked it died)"


@dataclass(frozen=True)
class LaunchRequest:
    """One process for the pool to fork: `python -m module args...` with `env` added, its output to `log_path`."""

    module: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)


class PoolChild:
    """What the pool tells about one child it forked. The exit stays unknown (None) if the pool dies first."""

    def __init__(self, ref: ProcessRef) -> None:
        self.ref = ref
        self.ready = ReadySignal()
        self._exited = threading.Event()
        self._exit: Exit | None = None
        self._listeners: list[Callable[[], None]] = []
        self.exited_at: float | None = None  # time.monotonic() when the pool reported the exit
        # Set when the pool died before reporting this child's exit: nobody will (it is re-parented to init).
        self.orphaned = False
        self._lock = threading.Lock()

    def exited(self, code: int) -> None:
        with self._lock:
            self.exited_at = time.monotonic()
            self._exit = Exit(code)
            self._exited.set()
            listeners = list(self._listeners)
        self.ready.set(False)
        for listener in listeners:
            listener()

    def notify_exit(self, listener: Callable[[], None]) -> None:
        """Call `listener` once it has exited (at once if it has)."""
        with self._lock:
            self._listeners.append(listener)
            done = self._exited.is_set()
        if done:
            listener()

    def exit(self) -> Exit | None:
        return self._exit

    def wait_exit(self, timeout: float) -> Exit | None:
        self._exited.wait(timeout)
        return self._exit


class _Connection:
    """One running pool process and its reader thread."""

    def __init__(self, log_path: Path, extra_launchable: str) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = fl_environment()
        if extra_launchable:
            env["FLORIST_POOL_LAUNCHABLE"] = extra_launchable
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "florist_grpc.launch.pool_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                # Own session: a Ctrl-C meant for the control plane does not reach the pool.
                start_new_session=True,
            )
        self.hello = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.next_number = 0
        self.pending: dict[int, tuple[Future[PoolChild], Path]] = {}
        self.children: dict[int, PoolChild] = {}
        self.reader = threading.Thread(target=self._read, name="florist-launcher-pool", daemon=True)
        self.reader.start()

    @property
    def usable(self) -> bool:
        return self.hello.is_set() and not self.closed.is_set()

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        try:
            for line in stdout:
                self._dispatch(json.loads(line))
        except (OSError, ValueError):
            log.exception("launcher pool %d: unreadable reply", self.process.pid)
        finally:
            with self.lock:
                self.closed.set()
                self.hello.set()  # wakes whoever waits for the pool to be ready: it never will be (usable is False)
                pending, self.pending = self.pending, {}
                for child in self.children.values():
                    child.orphaned = True  # still running, or gone unreported: their exit codes died with the pool
            for future, _ in pending.values():
                future.set_exception(PoolUnavailable("the launcher pool ended during a launch"))
            self.process.wait()
            log.info("launcher pool %d ended (%s)", self.process.pid, self.process.returncode)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "hello" in message:
            self.hello.set()
        elif "launched" in message:
            with self.lock:
                future, log_path = self.pending.pop(message["launched"], (None, Path()))
                if "error" in message:
                    child = None
                else:
                    ref = ProcessRef(pid=message["pid"], create_time=message["create_time"], log_path=str(log_path))
                    child = self.children[message["pid"]] = PoolChild(ref)
            if future is None:
                return
            if child is None:
                future.set_exception(PoolRefused(f"the launcher pool refused: {message['error']}"))
            else:
                future.set_result(child)
        elif "ready" in message:
            with self.lock:
                ready = self.children.get(message["ready"])
            if ready is not None:
                ready.ready.set(True)
        elif "exit" in message:
            with self.lock:
                ended = self.children.pop(message["exit"], None)
            if ended is not None:
                ended.exited(message["code"])

    def submit(self, requests: list[LaunchRequest]) -> list[Future[PoolChild]]:
        """Send every request in one write; each future gets its child (or PoolUnavailable) as the pool answers.
        The pool forks them back to back, without a round trip per child."""
        futures: list[Future[PoolChild]] = [Future() for _ in requests]
        lines = []
        with self.lock:
            if self.closed.is_set():
                raise PoolUnavailable("the launcher pool is down")
            numbers = []
            for request, future in zip(requests, futures, strict=True):
                self.next_number += 1
                numbers.append(self.next_number)
                self.pending[self.next_number] = (future, request.log_path)
                message = {"launch": self.next_number, "module": request.module, "args": request.args}
                lines.append(json.dumps({**message, "log_path": str(request.log_path), "env": request.env}) + "\n")
            stdin = self.process.stdin
            assert stdin is not None
            try:
                stdin.write("".join(lines).encode())
                stdin.flush()
            except OSError as exc:
                for number in numbers:
                    self.pending.pop(number, None)
                raise PoolUnavailable(f"the launcher pool is down: {exc}") from exc
        return futures

    def forget(self, future: Future[PoolChild]) -> None:
        """Stop waiting for `future`'s answer (the pool is silent on it)."""
        with self.lock:
            for number, (pending, _) in list(self.pending.items()):
                if pending is future:
                    del self.pending[number]

    def close(self, timeout: float) -> None:
        """No more launches. The pool ends once its last child has; wait `timeout` for that, no longer."""
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        with self.lock:
            running = bool(self.children)
        if not running:  # FL processes still running keep the pool (their reaper) alive: do not wait for them
            self.reader.join(timeout)

    def kill(self) -> None:
        """End the pool process (its children live on: they have their own sessions)."""
        if self.process.poll() is None:
            self.process.kill()


class LauncherPool:
    """One long-lived pool process per host, restarted when it breaks. Thread-safe."""

    def __init__(self, log_path: Path, timeouts: Timeouts, extra_launchable: str = "") -> None:
        self._log_path = log_path
        self._timeouts = timeouts
        self._extra = extra_launchable
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._stopped = False
        self._owners: weakref.WeakKeyDictionary[Future[PoolChild], _Connection] = weakref.WeakKeyDictionary()

    def start(self) -> None:
        """Start the pool process; returns at once (it imports torch and Flower in the background)."""
        with self._lock:
            self._stopped = False
            if self._connection is None or self._connection.closed.is_set():
                self._connection = _Connection(self._log_path, self._extra)

    @property
    def pid(self) -> int | None:
        connection = self._connection
        return connection.process.pid if connection is not None else None

    def wait_ready(self, timeout: float) -> bool:
        """True once the pool has done its imports and can launch."""
        connection = self._connection
        return connection is not None and connection.hello.wait(timeout) and connection.usable

    def launch(self, module: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> PoolChild:
        """Fork `python -m module args...` (with `env` added to its environment) from the pool; raises
        PoolUnavailable (and restarts a broken pool)."""
        return self.await_child(self.submit([LaunchRequest(module, args, log_path, env or {})])[0])

    def submit(self, requests: list[LaunchRequest]) -> list[Future[PoolChild]]:
        """Ask the pool to fork every one of `requests` at once; await each child with `await_child`, in order.
        Raises PoolUnavailable (and restarts a broken pool) if the pool cannot take them."""
        with self._lock:
            connection = self._connection
            if self._stopped or connection is None:
                raise PoolUnavailable("no launcher pool is running")
            if connection.closed.is_set():
                self._connection = _Connection(self._log_path, self._extra)
                raise PoolUnavailable("the launcher pool was down; restarting it")
        # A pool still importing is worth waiting for (a spawn would import the same things from scratch).
        if not connection.hello.wait(self._timeouts.pool_start_seconds):
            self._replace(connection)
            raise PoolUnavailable(f"the launcher pool was not ready within {self._timeouts.pool_start_seconds:g}s")
        try:
            futures = connection.submit(requests)
        except PoolUnavailable:
            self._replace(connection)
            raise
        for future in futures:
            self._owners[future] = connection
        return futures

    def await_child(self, future: Future[PoolChild]) -> PoolChild:
        """The child `future` (from `submit`) stands for, once the pool forked it. Awaited in submission order,
        each waits at most `pool_call_seconds`: the pool forks them in that order, so that is how long it was
        silent. Raises PoolUnavailable (and restarts a silent pool)."""
        connection = self._owners.pop(future, None)
        try:
            return future.result(self._timeouts.pool_call_seconds)
        except FutureTimeout as exc:
            if connection is not None:
                connection.forget(future)
                self._replace(connection)
            raise PoolUnavailable(
                f"the launcher pool did not answer within {self._timeouts.pool_call_seconds:g}s"
            ) from exc
        except PoolRefused:
            raise
        except PoolUnavailable:
            if connection is not None:
                self._replace(connection)
            raise

    def _replace(self, broken: _Connection) -> None:
        broken.kill()
        with self._lock:
            if self._connection is broken and not self._stopped:
                self._connection = _Connection(self._log_path, self._extra)

    def stop(self) -> None:
        """No more launches; the pool process ends by itself once the FL processes it forked have."""
        with self._lock:
            self._stopped = True
            connection, self._connection = self._connection, None
        if connection is None:
            return
        if not connection.hello.is_set():
            connection.kill()  # still importing: it has forked nothing, so there is nothing to wait for
        connection.close(self._timeouts.pool_stop_seconds)
