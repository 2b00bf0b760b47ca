"""How long the control plane takes to learn that Redis fails (docs/benchmarks.md section 16): StartTraining's
probe of a Redis that accepts connections and never answers, and of one that is down; a start whose embedded
Redis died (its pid a zombie, as in a process that embeds the control plane); a start whose recorded Redis pid is
alive but nothing answers on its port. Waits, not CPU: the figures are wall time.

python -m bench.compare --before REV --after REV "redis_failures.probe_hung()" "redis_failures.probe_down()" \
    "redis_failures.restart_after_redis_died()" "redis_failures.adopt_hung()"
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench.stats import record
from florist_grpc.config import Timeouts
from florist_grpc.domain.errors import Unavailable
from florist_grpc.metrics.embedded_redis import EmbeddedRedis
from florist_grpc.metrics.redis_users import RunUsers
from florist_grpc.net import free_service_port


def _check_seconds(url: str) -> float:
    """RunUsers.check (StartTraining's "is Redis there" probe, 1 s timeouts) until it refuses."""
    users = RunUsers(url, 3600)
    began = time.monotonic()
    try:
        users.check()
    except Unavailable:
        return time.monotonic() - began
    finally:
        users.close()
    raise AssertionError(f"{url} answered")


def probe_hung() -> float:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        took = _check_seconds(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
    record("redis_fail", case="probe_hung", seconds=took, loadavg_1m=os.getloadavg()[0])
    return took


def probe_down() -> float:
    took = _check_seconds(f"redis://127.0.0.1:{free_service_port()}/0")
    record("redis_fail", case="probe_down", seconds=took, loadavg_1m=os.getloadavg()[0])
    return took


def restart_after_redis_died() -> float:
    with tempfile.TemporaryDirectory() as directory:
        first = EmbeddedRedis(Path(directory), Timeouts())
        first.start()
        dead = psutil.Process(json.loads((first.dir / "redis.json").read_text())["pid"])
        dead.kill()  # first's Popen keeps it unreaped
        deadline = time.monotonic() + 10
        while dead.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        second = EmbeddedRedis(Path(directory), Timeouts())
        began = time.monotonic()
        second.start()
        took = time.monotonic() - began
        second.stop()
    record("redis_fail", case="restart_after_redis_died", seconds=took, loadavg_1m=os.getloadavg()[0])
    return took


def adopt_hung() -> float:
    """The state file names a live process, and its port accepts connections but never answers."""
    with tempfile.TemporaryDirectory() as directory, socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(64)
        holder = subprocess.Popen(["sleep", "300"])
        try:
            embedded = EmbeddedRedis(Path(directory), Timeouts())
            embedded.dir.mkdir(parents=True, exist_ok=True)
            created = psutil.Process(holder.pid).create_time()
            state = {"port": mute.getsockname()[1], "pid": holder.pid, "create_time": created}
            (embedded.dir / "redis.json").write_text(json.dumps(state))
            began = time.monotonic()
            embedded.start()
            took = time.monotonic() - began
            embedded.stop()
        finally:
            holder.kill()
            holder.wait(10)
    record("redis_fail", case="adopt_hung", seconds=took, loadavg_1m=os.getloadavg()[0])
    return took
