"""Who may do what in Redis: the control plane's own user, the user manager, and one user per FL run (per uuid).

An FL process may only SET and GET its own run's key and PUBLISH on its own run's channel: it cannot CONFIG SET
a directory and SAVE files as the service user, read or forge another run's report, or flush the database. The
users are created by StartTraining before a process is launched and dropped, with the runs' keys set to expire,
once the job's terminal event is persisted. Only where we own the server (the embedded Redis): with an external
--redis-url, FL processes use the URL's own credentials and only the expiry applies.

Creating users needs ACL SETUSER, and a user who may run it may create one with +@all: so the connection that
reads reports (the control user) has no ACL command at all, only what it sends, on run keys and channels only.
Users are managed by a second user, the user manager, whose password is used by RunUsers and EmbeddedRedis alone
and never by a connection that reads what a site wrote.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import redis

from florist_grpc import redis_clients
from florist_grpc.domain.errors import Unavailable

log = logging.getLogger(__name__)

CONTROL_USER = "florist"
ADMIN_USER = "florist-admin"
# A run uuid (uuid.uuid4().hex): 32 lowercase hex digits. The protocol's only keys and channels.
RUN_KEY_PATTERN = "[0-9a-f]" * 32
# The control plane's (and an agent's) own connections: exactly the commands they send, on run keys and
# channels only. Reading: GETRANGE, STRLEN (metrics/report_fetch.py), GET (an agent reading its clients' reports);
# SUBSCRIBE/UNSUBSCRIBE (metrics/listener.py); SET + PUBLISH in MULTI/EXEC (reports an agent relays,
# launch/report_relay.py); EXPIRE (retiring an ended job's keys); PING (health checks, pub/sub keepalive);
# CLIENT SETINFO (redis-py names itself on connect). No ACL, CONFIG, SAVE, KEYS, FLUSH, EVAL or MODULE.
CONTROL_RULES = (
    "resetkeys",
    f"~{RUN_KEY_PATTERN}",
    "resetchannels",
    f"&{RUN_KEY_PATTERN}",
    "-@all",
    "+strlen",
    "+getrange",
    "+get",
    "+subscribe",
    "+unsubscribe",
    "+set",
    "+publish",
    "+multi",
    "+exec",
    "+discard",
    "+expire",
    "+ping",
    "+client|setinfo",
)
# The user manager: the runs' users (ACL SETUSER/DELUSER/SAVE; ACL LOAD adopts a Redis an older version started),
# and the server's own settings (CONFIG GET dir tells our Redis; CONFIG SET applies config.Limits). ACL GETUSER and
# CLIENT LIST let an operator (and the tests) look. No key, no channel: it never reads or writes a report.
ADMIN_RULES = (
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+acl|setuser",
    "+acl|deluser",
    "+acl|save",
    "+acl|load",
    "+acl|getuser",
    "+config|get",
    "+config|set",
    "+client|list",
    "+client|setinfo",
)
RUN_USER_PREFIX = "run-"


def run_rules(run_uuid: str) -> list[str]:
    """One FL run: its key and channel only; SET/GET/PUBLISH, inside MULTI/EXEC (the reporter's pipeline)."""
    return [
        "resetkeys",
        f"~{run_uuid}",
        "resetchannels",  # Redis 6.2 lets new users publish anywhere unless told otherwise
        f"&{run_uuid}",
        "-@all",
        "+set",
        "+get",
        "+publish",
        "+multi",
        "+exec",
        "+discard",
        "+ping",
    ]


@dataclass(frozen=True)
class RedisCredentials:
    username: str = ""
    password: str = ""


class RunUsers:
    """Credentials for FL runs, and their retirement once a job has ended. Thread-safe."""

    def __init__(self, redis_url: str, key_ttl_seconds: float, admin_url: str | None = None) -> None:
        """`admin_url`: the user manager's URL where we own the server (each run then gets a user of its own);
        None for an external Redis."""
        self._redis = redis_clients.client(redis_url, 1.0)
        self._admin = redis_clients.client(admin_url, 1.0) if admin_url else None
        parsed = urlparse(redis_url)
        # An external Redis: FL processes log in as the URL says (its own users are its operator's business).
        self._shared = RedisCredentials(unquote(parsed.username or ""), unquote(parsed.password or ""))
        self._ttl = max(1, int(key_ttl_seconds))
        self._lock = threading.Lock()
        self._unretired: set[str] = set()  # uuids whose retirement failed (Redis down): tried again next time

    def check(self) -> None:
        """Raise Unavailable at once when Redis does not answer (a start would only fail later, less clearly)."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise Unavailable(f"the report store (Redis) is unavailable: {exc}") from exc

    def create(self, run_uuids: Sequence[str]) -> dict[str, RedisCredentials]:
        """Credentials for each run uuid (a new restricted user each where we own the server)."""
        if self._admin is None:
            return {u: self._shared for u in run_uuids}
        created = {u: RedisCredentials(RUN_USER_PREFIX + u, secrets.token_hex(24)) for u in run_uuids}
        try:
            with self._lock:
                pipe = self._admin.pipeline(transaction=False)
                for run_uuid, credentials in created.items():
                    rules = ["reset", "on", f">{credentials.password}", *run_rules(run_uuid)]
                    pipe.execute_command("ACL", "SETUSER", credentials.username, *rules)  # type: ignore[no-untyped-call]
                pipe.execute_command("ACL", "SAVE")  # type: ignore[no-untyped-call]  # a restarted Redis loads them
                pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"could not create the runs' Redis users: {exc}") from exc
        return created

    def retire(self, run_uuids: Sequence[str]) -> None:
        """The job ended and its last reports are persisted: expire the runs' keys, drop their users."""
        with self._lock:
            pending = sorted(self._unretired.union(run_uuids))
            try:
                pipe = self._redis.pipeline(transaction=False)
                for run_uuid in pending:
                    pipe.expire(run_uuid, self._ttl)
                pipe.execute()
                if self._admin is not None:
                    users = (RUN_USER_PREFIX + u for u in pending)
                    admin = self._admin.pipeline(transaction=False)
                    admin.execute_command("ACL", "DELUSER", *users)  # type: ignore[no-untyped-call]
                    admin.execute_command("ACL", "SAVE")  # type: ignore[no-untyped-call]
                    admin.execute()
            except redis.RedisError as exc:
                log.warning(
                    "retiring %d run(s) in Redis failed (%s); trying again with the next job", len(pending), exc
                )
                self._unretired.update(pending)
                return
            self._unretired.clear()

    def close(self) -> None:
        self._redis.close()
        if self._admin is not None:
            self._admin.close()
