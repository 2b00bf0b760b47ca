"""A handle on one FL process, wherever it runs: the follower treats local and agent-run processes alike."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.fl.run_config import run_environment
from florist_grpc.launch import process
from florist_grpc.launch.exit_file import read_exit_code
from florist_grpc.launch.pool import ORPHANED_EXIT, LauncherPool, LaunchRequest, PoolChild, PoolUnavailable
from florist_grpc.launch.readiness import PipeReady

log = logging.getLogger(__name__)


class ProcessHandle(Protocol):
    ref: ProcessRef

    def poll(self) -> Exit | None:
        """None while running."""

    def terminate(self) -> None:
        """Ask the process tree to stop (SIGTERM); returns at once."""

    def kill(self) -> None:
        """End the process tree now (SIGKILL)."""

    def log_tail(self) -> str:
        """The last lines of its log."""


class LocalProcess:
    """A process on this machine: our child (spawned), forked by the launcher pool (which reports its exit), or
    adopted after a restart (psutil, and the exit code its reaper wrote next to its log, if any)."""

    def __init__(
        self,
        ref: ProcessRef,
        popen: subprocess.Popen[bytes] | None = None,
        pool_child: PoolChild | None = None,
        ready: PipeReady | None = None,
    ) -> None:
        self.ref = ref
        self._popen = popen
        self._pool_child = pool_child
        self._ready = ready

    def poll(self) -> Exit | None:
        if self._popen is not None:
            code = self._popen.poll()
            return None if code is None else Exit(code)
        if self._pool_child is not None and (status := self._pool_child.exit()) is not None:
            return status
        if self._pool_child is not None and not self._pool_child.orphaned:
            # Its pool reports the exit (notify_exit): no need to look in /proc. The watcher polls every process
            # of every job at each exit, so at 100 clients their ends cost 10,000 psutil lookups.
            return None
        if process.find(self.ref) is not None:
            return None
        if self._pool_child is not None and self._pool_child.wait_exit(0.5) is not None:
            # Gone, and its pool reports the exit a moment after reaping it.
            return self._pool_child.exit()
        code = read_exit_code(self.ref.log_path, self.ref.pid)
        if code is None and self._pool_child is not None and self._pool_child.orphaned:
            return Exit(None, ORPHANED_EXIT)  # say why it is unknown: no restart of ours is involved
        return Exit(code)

    def poll_now(self) -> Exit | None:
        """As `poll`, but looks in /proc even while its pool would report the exit: for a decision that cannot
        wait for the report (a client failed: is its server gone too?)."""
        if self._pool_child is None or self._pool_child.exit() is not None or process.find(self.ref) is not None:
            return self.poll()
        self._pool_child.wait_exit(0.5)  # gone: its pool reports the exit a moment after reaping it
        return self._pool_child.exit()

    def notify_exit(self, listener: Callable[[], None]) -> None:
        """Call `listener` when it exits, if its launcher reports that by event (the pool does; a spawn is polled)."""
        if self._pool_child is not None:
            self._pool_child.notify_exit(listener)

    @property
    def exited_at(self) -> float | None:
        """time.monotonic() when its exit was reported, if its launcher reports exits (the pool does)."""
        return self._pool_child.exited_at if self._pool_child is not None else None

    @property
    def forked(self) -> bool:
        """Forked by a launcher pool: it started in milliseconds, its imports already done."""
        return self._pool_child is not None

    @property
    def clients_after_ready(self) -> bool:
        """Forked, it is ready in milliseconds: its clients start then (launch/launcher.py)."""
        return self.forked

    def advertised_host(self) -> str:
        return ""  # the address the job planned: it runs here

    def host_file(self) -> str:
        return ""

    async def wait_ready(self) -> bool:
        """True once the process said it is ready (fl/readiness.py); False if it ended first."""
        if self._pool_child is not None:
            return await self._pool_child.ready.wait()
        if self._ready is not None:
            return await self._ready.wait()
        raise RuntimeError("readiness is only known for a process launched by start_local")

    def wait_exit(self, timeout: float) -> Exit | None:
        """Its exit, waiting up to `timeout` for it (after it said it ended: only its exit status is late)."""
        if self._popen is not None:
            try:
                return Exit(self._popen.wait(timeout))
            except subprocess.TimeoutExpired:
                return None
        if self._pool_child is not None:
            self._pool_child.wait_exit(timeout)
        return self.poll()

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            process.signal_group(self.ref, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def log_tail(self) -> str:
        return process.log_tail(self.ref.log_path)


FL_MODULES = {"server": "florist_grpc.fl.server", "client": "florist_grpc.fl.client"}


def start_local(role: str, run_json: str, log_path: Path, pool: LauncherPool | None = None) -> LocalProcess:
    """Launch an FL `role` ("server" or "client") on this machine for the run described by `run_json`.

    The one seam through which every local FL process starts (control plane and agents alike): forked from the
    caller's launcher `pool`, or spawned when it has none or the pool is unavailable.
    """
    return finish_local(submit_local(role, [(run_json, log_path)], pool)[0])


class PendingLaunch:
    """A local launch asked of the pool (or to be spawned): `finish_local` turns it into its process."""

    def __init__(
        self, role: str, run_json: str, log_path: Path, pool: LauncherPool | None, child: Future[PoolChild] | None
    ) -> None:
        self.role, self.run_json, self.log_path, self.pool, self.child = role, run_json, log_path, pool, child


def submit_local(role: str, runs: list[tuple[str, Path]], pool: LauncherPool | None) -> list[PendingLaunch]:
    """Ask `pool` to fork an FL `role` for each (run_json, log_path) of `runs`, all in one request: the pool forks
    them back to back. Returns at once; `finish_local` each, in order. Without a usable pool, each spawns there."""
    module = FL_MODULES[role]
    children: list[Future[PoolChild] | None] = [None] * len(runs)
    if pool is not None:
        requests = [LaunchRequest(module, [], log_path, run_environment(run_json)) for run_json, log_path in runs]
        try:
            children = list(pool.submit(requests))
        except PoolUnavailable as exc:
            log.warning("launching %d FL %s process(es) by spawning: %s", len(runs), role, exc)
    return [
        PendingLaunch(role, run_json, log_path, pool, child)
        for (run_json, log_path), child in zip(runs, children, strict=True)
    ]


def finish_local(pending: PendingLaunch) -> LocalProcess:
    """The process of a launch `submit_local` asked for: the pool's child, or a spawn if the pool failed it."""
    if pending.child is not None and pending.pool is not None:
        try:
            child = pending.pool.await_child(pending.child)
            return LocalProcess(child.ref, pool_child=child)
        except PoolUnavailable as exc:
            log.warning("launching the FL %s by spawning it: %s", pending.role, exc)
    ready_r, ready_w = os.pipe()
    try:
        popen, ref = process.spawn(
            FL_MODULES[pending.role], [], pending.log_path, run_environment(pending.run_json), ready_fd=ready_w
        )
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
    return LocalProcess(ref, popen, ready=PipeReady(ready_r))
