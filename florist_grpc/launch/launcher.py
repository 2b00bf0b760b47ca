"""Where a job's FL processes run: one interface, several backends.

A backend launches a process with its environment, finds it again after a restart by its ref, learns that it
ended and how (`ProcessHandle.poll`), stops it (`terminate`/`kill`) and reads its log (`log_tail`, and the log
file StreamLogs follows). `LocalLauncher` (the launcher pool, spawning as fallback) and the Slurm backend
(launch/slurm/) run the FL server and agent-less clients; agents run their sites' clients behind the same
`ProcessHandle` (launch/agent_process.py). A Kubernetes backend would be one more module beside these
(docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.domain.resources import Resources
from florist_grpc.launch.handles import (
    LocalProcess,
    PendingLaunch,
    ProcessHandle,
    finish_local,
    start_local,
    submit_local,
)
from florist_grpc.launch.pool import LauncherPool, PoolUnavailable
from florist_grpc.net import bind_address

T = TypeVar("T")


@dataclass(frozen=True)
class LaunchSpec:
    """One FL process to launch."""

    job_id: str
    source_key: str  # "server", "client0", ...
    role: str  # "server" or "client"
    run_json: str  # handed to it in its environment (fl/run_config.py), never on its command line
    log_path: Path
    resources: Resources = field(default_factory=Resources)


class LaunchedProcess(ProcessHandle, Protocol):
    """A process a launcher just started: a handle, plus what the launch sequence needs of an FL server."""

    @property
    def clients_after_ready(self) -> bool:
        """Clients start once it is ready (forked in milliseconds, or placed by a scheduler: its address is only
        known then); otherwise they start while it imports (spawned: both take seconds)."""

    async def wait_ready(self) -> bool:
        """True once it said it is ready; False if it ended first."""

    def wait_exit(self, timeout: float) -> Exit | None:
        """Its exit, waiting up to `timeout` for it once it said it ended; None if not yet known."""

    def advertised_host(self) -> str:
        """The host its clients reach it at, once ready; '' = the address the job planned."""

    def host_file(self) -> str:
        """A file (in a dir every node sees) its host appears in once it is ready, for clients started before
        that to wait for (fl/readiness.py); '' = none: clients use the planned address."""


class Launcher(Protocol):
    """A backend for the control plane's own FL processes (the server, and clients without an agent)."""

    name: str
    # FL servers run on this machine: a tunnel joins one on loopback, and one whose remote clients all tunnel
    # binds loopback only. Placed by a scheduler, a server is joined where it runs.
    fl_servers_here: bool

    def server_bind(self, server_address: str) -> str:
        """The address the FL server binds, for the host:port the job planned."""

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        """Start the process; raises (a FloristError or OSError) if it could not be started."""

    def adopt(self, ref: ProcessRef) -> ProcessHandle:
        """A handle on a process launched before a restart, found again by its ref."""

    def close(self) -> None:
        """Stop supervising (processes keep running: a restart adopts them)."""


class LocalLauncher:
    """FL processes on this machine: forked from the launcher pool when it is up, spawned otherwise."""

    name = "local"
    fl_servers_here = True

    def __init__(self, pool: LauncherPool | None) -> None:
        self._pool = pool

    def server_bind(self, server_address: str) -> str:
        return bind_address(server_address)

    async def launch(self, spec: LaunchSpec) -> LocalProcess:
        start = functools.partial(start_local, spec.role, spec.run_json, spec.log_path, self._pool)
        return await _undone_if_cancelled(start, LocalProcess.kill)

    async def launch_many(self, role: str, specs: list[LaunchSpec]) -> AsyncGenerator[LocalProcess, None]:
        """Launch `specs` (all of one role) in one request to the pool, which forks them back to back (a round
        trip per process took ~4x the fork itself); each is yielded as it starts. Closed early, the generator
        kills those launched and not yet yielded: nobody else knows of them."""
        runs = [(spec.run_json, spec.log_path) for spec in specs]
        pending = await _undone_if_cancelled(functools.partial(submit_local, role, runs, self._pool), _kill_forked)
        taken = 0
        try:
            for launch in pending:
                # Cut here (a shutdown), a spawn fallback's process would be started by the thread all the same.
                started = await _undone_if_cancelled(functools.partial(finish_local, launch), LocalProcess.kill)
                taken += 1  # the caller's from here on
                yield started
        finally:
            if taken < len(pending):
                await asyncio.to_thread(_kill_forked, pending[taken:])

    def adopt(self, ref: ProcessRef) -> ProcessHandle:
        return LocalProcess(ref)

    def close(self) -> None:
        pass


class _Abandonable(Generic[T]):
    """Blocking `work` that starts processes, for a thread, with `undo` for when its caller is gone by the time it
    returns: then it is undone on that same thread (an executor's thread, which a shutdown waits for)."""

    def __init__(self, work: Callable[[], T], undo: Callable[[T], object]) -> None:
        self._work, self._undo = work, undo
        self._lock = threading.Lock()
        self._abandoned = False
        self._handed: list[T] = []  # the result, once handed to the caller

    def run(self) -> T:
        result = self._work()
        with self._lock:
            if not self._abandoned:
                self._handed.append(result)
                return result
        self._undo(result)
        return result

    def abandon(self) -> None:
        """The caller is gone: undo the work when it returns, or now if it returned before the caller heard."""
        with self._lock:
            self._abandoned = True
            handed, self._handed = self._handed, []
        for result in handed:
            # Non-daemon: the interpreter waits for it at exit.
            threading.Thread(target=self._undo, args=(result,), name="florist-undo-launch").start()


async def _undone_if_cancelled(work: Callable[[], T], undo: Callable[[T], object]) -> T:
    """`work` (blocking: it starts processes) on a thread. If the caller is cancelled meanwhile (a shutdown), the
    thread still finishes, and what it started is undone: nobody else will ever know of it."""
    job = _Abandonable(work, undo)
    try:
        return await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(job.run)))
    except asyncio.CancelledError:
        job.abandon()
        raise


def _kill_forked(launches: list[PendingLaunch]) -> None:
    """Kill what the pool forked of `launches` (the rest was never started: nothing to stop)."""
    for launch in launches:
        if launch.child is not None and launch.pool is not None:
            with contextlib.suppress(PoolUnavailable):
                LocalProcess(launch.pool.await_child(launch.child).ref).kill()


async def launch_each(launcher: Launcher, role: str, specs: list[LaunchSpec]) -> AsyncGenerator[LaunchedProcess, None]:
    """Launch `specs` in order and yield each process as it starts: all in one request with the local launcher
    (its pool forks them back to back), one by one with any other. Close it (contextlib.aclosing) when done."""
    if isinstance(launcher, LocalLauncher):
        async for local in launcher.launch_many(role, specs):
            yield local
        return
    for spec in specs:
        yield await launcher.launch(spec)
