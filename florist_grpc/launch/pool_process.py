"""The launcher pool process: `python -m florist_grpc.launch.pool_process`.

It imports torch, numpy, flwr and our FL modules once, runs nothing, and forks FL server and client processes on
request, so each of them starts with those imports already paid for (and shares their pages with its siblings).
Nothing here starts a thread or a torch thread pool: those are not fork-safe once running. Each child sets its
own thread counts (fl/process.py prepare_process), as a spawned FL process does.

Protocol (JSON lines; requests on stdin, replies and notices on stdout, in order):
  -> {"launch": N, "module": "florist_grpc.fl.server", "args": [...], "log_path": PATH, "env": {NAME: VALUE}}
  <- {"hello": POOL_PID}                                   once, when the imports are done
  <- {"launched": N, "pid": PID, "create_time": T}         or {"launched": N, "error": MESSAGE}
  <- {"ready": PID}                                        the child said it is ready (fl/readiness.py)
  <- {"exit": PID, "code": CODE}                           the child ended (negative CODE: killed by signal -CODE)
Each child's exit code is also written to `<log_path>.exit`, so it outlives the control plane that asked for it.
End of stdin: no more launches; the pool stays only until its last child has ended (it reaps them).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import random
import selectors
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import psutil

from florist_grpc.fl.process import exit_code
from florist_grpc.fl.readiness import READY_FD_ENV
from florist_grpc.launch.exit_file import write_exit_code
from florist_grpc.launch.huge_pages import HeapCollapse, idle_seconds

PRELOAD = (
    "numpy",
    "torch",
    "torch.utils.data",
    "flwr",
    "flwr.client",
    "flwr.server",
    # Where start_client/start_server live: importing them pulls in sqlalchemy and alembic (seconds per process).
    "flwr.compat.client.app",
    "flwr.compat.server.app",
    "redis",
    "florist_grpc.fl.server",
    "florist_grpc.fl.client",
    "florist_grpc.fl.flower_api",
    "florist_grpc.fl.models",
    "florist_grpc.fl.strategies",
    "florist_grpc.fl.reporter",
    "florist_grpc.fl.data",
    "florist_grpc.fl.probe",
    "florist_grpc.fl.optimizers",
    "florist_grpc.fl.checkpoints",
    # Imported lazily on first use, so every child would pay them on its own (found by comparing sys.modules at a
    # child's end with the pool's). torch._dynamo (with sympy and mpmath) is what torch.optim imports when a
    # client builds its first optimizer: 1.5 s and ~100 MiB of private pages in each client.
    "torch._dynamo",
    "torch.utils.serialization",
    "safetensors.torch",
    "numpy.random",
    "grpc._channel",
    "grpc._server",
    "setproctitle",
)
LAUNCHABLE = frozenset({"florist_grpc.fl.server", "florist_grpc.fl.client", "florist_grpc.fl.probe"})
# Idle this long (no child, no launch), the pool moves its heap to huge pages (launch/huge_pages.py). Long enough
# that a plane started for one job (a test, a demo) is not charged ~1 s of CPU for it; negative or "never": never.
HUGE_PAGES_AFTER_SECONDS = idle_seconds(os.environ.get("FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS", "10"))


@dataclass
class Child:
    log_path: str
    ready_fd: int | None


class Pool:
    def __init__(self, launchable: frozenset[str]) -> None:
        self.launchable = launchable
        self.heap = HeapCollapse(HUGE_PAGES_AFTER_SECONDS)
        self.children: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.accepting = True
        self.control_open = True
        self._pending = b""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        # SIGCHLD wakes the select loop through this pipe: no thread, no polling.
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "control")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "child")

    def send(self, message: dict[str, Any]) -> None:
        if not self.control_open:
            return
        try:
            os.write(sys.stdout.fileno(), (json.dumps(message) + "\n").encode())
        except OSError:
            self.control_open = False  # the control plane is gone; children still get reaped

    def run(self) -> None:
        self.send({"hello": os.getpid()})
        while self.accepting or self.children:
            events = self.selector.select(None if self.children else self.heap.wait())
            if not events and self.heap.step():
                print(f"launcher pool: {self.heap.summary()}", file=sys.stderr, flush=True)
            for key, _ in events:
                if key.data == "control":
                    self._read_control()
                elif key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    self._reap()
                else:
                    self._read_ready(key.data)
            self._reap()  # a SIGCHLD that arrived while we were busy forking

    def _read_control(self) -> None:
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            self.accepting = False
            self.selector.unregister(sys.stdin.fileno())
            return
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.strip():
                self._launch(json.loads(line))

    def _launch(self, request: dict[str, Any]) -> None:
        self.heap.busy()  # idle time counts from the last launch, even a refused one
        number = request["launch"]
        module, args, log_path = request["module"], list(request["args"]), request["log_path"]
        env = {str(k): str(v) for k, v in request.get("env", {}).items()}
        if module not in self.launchable:
            self.send({"launched": number, "error": f"{module} is not launchable"})
            return
        try:
            os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
            ready_r, ready_w = os.pipe()
            os.set_blocking(ready_r, False)
        except OSError as exc:
            self.send({"launched": number, "error": str(exc)})
            return
        pid = os.fork()
        if pid == 0:
            code = 70  # EX_SOFTWARE: the child failed before it could run
            try:
                os.close(ready_r)
                self._become_child(ready_w)
                os.environ.update(env)  # what a spawn adds to its child's environment (secrets never in argv)
                code = run_child(module, args, log_path, ready_w)
            finally:
                os._exit(code)
        os.close(ready_w)
        self.children[pid] = Child(log_path, ready_r)
        self.selector.register(ready_r, selectors.EVENT_READ, pid)
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = 0.0
        # Not reaped before this reply (we reap only in the loop), so the pid cannot have been recycled yet.
        self.send({"launched": number, "pid": pid, "create_time": create_time})

    def _become_child(self, ready_w: int) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        for fd in (self._wake_r, self._wake_w, *(c.ready_fd for c in self.children.values() if c.ready_fd)):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_ready(self, pid: int) -> None:
        child = self.children.get(pid)
        if child is None or child.ready_fd is None:
            return
        try:
            data = os.read(child.ready_fd, 64)
        except BlockingIOError:
            return
        if data:
            self.send({"ready": pid})
        self._close_ready(child)

    def _close_ready(self, child: Child) -> None:
        if child.ready_fd is not None:
            self.selector.unregister(child.ready_fd)
            os.close(child.ready_fd)
            child.ready_fd = None

    def _reap(self) -> None:
        reaped: list[tuple[int, int]] = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.heap.busy()  # and from the last child's end
            if child.ready_fd is not None:
                with contextlib.suppress(OSError):  # includes BlockingIOError: it never said so
                    if os.read(child.ready_fd, 64):  # said ready just before it ended
                        self.send({"ready": pid})
                self._close_ready(child)
            code = os.waitstatus_to_exitcode(status)
            write_exit_code(child.log_path, pid, code)
            reaped.append((pid, code))
        # Reaped together, their order is the pids' not the deaths': report those killed by a signal first (the
        # cause, most likely, of the others' ends).
        for pid, code in sorted(reaped, key=lambda r: r[1] >= 0):
            self.send({"exit": pid, "code": code})


def run_child(module: str, args: list[str], log_path: str, ready_fd: int) -> int:
    """In the forked child: become what `python -m module args...` spawned in its own session would be."""
    os.setsid()  # own session and process group: outlives the pool and the control plane; signalled by group
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    os.environ[READY_FD_ENV] = str(ready_fd)
    sys.argv = [module, *args]
    random.seed()  # not the pool's state, shared by every sibling
    _set_title(f"{sys.executable} -m {module} {' '.join(args)}")
    code = 0
    try:
        importlib.import_module(module).main()
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    return code


def _set_title(title: str) -> None:
    # Operators (and tests) find FL processes by their command line, as they would a spawned one.
    import setproctitle

    setproctitle.setproctitle(title)


def main() -> None:
    for module in PRELOAD:
        importlib.import_module(module)
    from florist_grpc.fl.warm_up import warm_up

    try:
        warm_up()  # a client's first round, once here rather than in every child (fl/warm_up.py)
    except Exception:  # an optimisation: without it the children work as well, each writing its own pages
        traceback.print_exc()
        print("launcher pool: the warm-up round failed (above); forking without it", file=sys.stderr, flush=True)
    # Move everything imported out of the collector's reach: a child's collections would otherwise touch (and
    # so copy) every page holding an object, undoing the sharing that forking buys. Children collect as usual.
    gc.freeze()
    extra = os.environ.get("FLORIST_POOL_LAUNCHABLE", "")
    # Tests add their own modules; the control plane launches only the FL server and client.
    Pool(LAUNCHABLE | frozenset(m for m in extra.split(",") if m)).run()


if __name__ == "__main__":
    main()
