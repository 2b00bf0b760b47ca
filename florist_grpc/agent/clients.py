"""This site's FL client processes, and the one rule for the data they may read: inside --data-root.

Clients run in their own sessions (launch.handles.start_local), so they outlive the agent process. Each launch is
recorded in the agent's state directory; a new agent started on the same data root adopts the clients still
running (their exit codes are then unknown), so killing an agent never kills training.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from florist_grpc.domain.catalog import OPTIMIZERS
from florist_grpc.domain.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.domain.validation import DEVICE
from florist_grpc.launch import process
from florist_grpc.launch.agent_protocol import ClientJob, KnownClient, LaunchClient, ProcessExited
from florist_grpc.launch.handles import LocalProcess, start_local
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.launch.probe import probe_files
from florist_grpc.metrics.redis_users import RedisCredentials
from florist_grpc.net import address_problem, split_host_port

log = logging.getLogger(__name__)


def resolve_data_path(root: Path, state_dir: Path, data_path: str) -> Path:
    """The file `data_path` names inside `root`; raises PermissionDenied naming the problem.

    Resolving first (symlinks followed, `..` collapsed) and then comparing whole path components refuses
    `../` escapes, symlinks pointing outside, and prefix tricks (`/data-other` is not inside `/data`).
    """
    if not data_path or "\x00" in data_path:
        raise PermissionDenied("data_path must be a non-empty path")
    path = (root / data_path).resolve()
    if not path.is_relative_to(root):
        raise PermissionDenied(f"data_path {data_path!r} is outside this agent's data root")
    if path.is_relative_to(state_dir):
        raise PermissionDenied(f"data_path {data_path!r} is inside the agent's own state directory")
    if not path.is_file():
        raise PermissionDenied(f"data_path {data_path!r} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise PermissionDenied(f"data_path {data_path!r} is not readable by the agent")
    return path


@dataclass
class SiteClient:
    handle: LocalProcess
    exit: Exit | None = None


class SiteClients:
    def __init__(
        self,
        data_root: Path,
        state_dir: Path,
        stop_grace: float,
        probe_seconds: float,
        pool: LauncherPool | None = None,
    ) -> None:
        self._probe_seconds = probe_seconds
        self._pool = pool
        self.root = data_root.resolve()
        self.state_dir = state_dir.resolve()
        self._record = self.state_dir / "clients.json"
        self._stop_grace = stop_grace
        self._lock = threading.Lock()  # launches and stops run in worker threads
        self._clients: dict[str, SiteClient] = {}
        self._jobs: dict[str, ClientJob] = {}  # the job of each client launched by this agent process (audit log)

    def adopt_recorded(self) -> list[str]:
        """Adopt the clients a previous agent process on this data root launched; returns their uuids."""
        try:
            recorded = json.loads(self._record.read_text())
        except (OSError, ValueError):
            return []
        for client_uuid, ref in recorded.items():
            handle = LocalProcess(ProcessRef(**ref))
            status = handle.poll()
            self._clients[client_uuid] = SiteClient(handle, status)
        log.info("adopted %d client(s) recorded by a previous agent", len(self._clients))
        return list(self._clients)

    def _save(self) -> None:
        body = {u: asdict(c.handle.ref) for u, c in self._clients.items() if c.exit is None}
        tmp = self._record.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self._record)

    def check(self, data_path: str) -> str:
        """'' if a client could read `data_path`, else why not."""
        try:
            resolve_data_path(self.root, self.state_dir, data_path)
        except PermissionDenied as exc:
            return str(exc)
        return ""

    def probe(self, data_path: str, label_column: str) -> dict[str, Any]:
        """The summary of a data file inside the data root (read in a subprocess: torch stays out of the agent)."""
        path = resolve_data_path(self.root, self.state_dir, data_path)
        return probe_files([(str(path), label_column)], self._probe_seconds, self._pool)[0]

    def launch(
        self,
        request: LaunchClient,
        redis_address: str,
        credentials: RedisCredentials,
        tls_ca: Path | None,
        tunnel: str = "",
    ) -> ProcessRef:
        """Start the client (once per uuid: a retried launch returns the running one); `tunnel`: the address of
        its tunnel on this agent's loopback, where it reaches its FL server instead of the address it was given."""
        asked = request.run
        problems = []
        if not asked.uuid.isalnum():
            problems.append(FieldViolation("client_uuid", "must be alphanumeric"))
        # The model may come from a plugin installed here: the client process builds it (and fails, logged, if
        # the plugin is missing on this machine).
        if not asked.model:
            problems.append(FieldViolation("model", "is required"))
        if asked.optimizer not in OPTIMIZERS:
            problems.append(FieldViolation("optimizer", f"unknown optimizer {asked.optimizer!r}"))
        if tunnel and (problem := address_problem(asked.server_address)):
            problems.append(FieldViolation("server_address", problem))
        if not DEVICE.match(asked.device):
            problems.append(FieldViolation("device", f"unknown device {asked.device!r}"))
        if problems:
            raise InvalidArgument(problems)
        if request.tls and tls_ca is None:
            raise PermissionDenied("the FL server uses TLS, but this agent has no --tls-ca to verify it with")
        data = resolve_data_path(self.root, self.state_dir, asked.data_path)
        with self._lock:
            existing = self._clients.get(asked.uuid)
            if existing is not None:
                return existing.handle.ref
            # What is the site's own: its file, its Redis and the client's user there, its CA.
            run = replace(
                asked,
                data_path=str(data),
                redis_address=redis_address,
                redis_username=credentials.username,
                redis_password=credentials.password,
                root_certificates_file=str(tls_ca) if request.tls and tls_ca else "",
            )
            if tunnel:
                # TLS stays end to end: the client checks the FL server's certificate for the advertised name.
                name = split_host_port(asked.server_address)[0] if request.tls else ""
                run = replace(run, server_address=tunnel, tls_server_name=name)
            handle = start_local("client", run.to_json(), self.state_dir / "logs" / f"{run.uuid}.log", self._pool)
            self._clients[run.uuid] = SiteClient(handle)
            self._jobs[run.uuid] = request.job
            self._save()
        log.info("launched client %s (pid %d)", run.uuid, handle.ref.pid)
        return handle.ref

    def stop(self, client_uuid: str) -> None:
        """SIGTERM the client's process tree, SIGKILL after the grace (blocks up to the grace)."""
        client = self._clients.get(client_uuid)
        if client is not None and client.exit is None:
            client.handle.terminate()
            process.terminate([client.handle.ref], self._stop_grace)

    def poll(self) -> list[tuple[str, Exit]]:
        """Clients that ended since the last call."""
        ended = []
        with self._lock:
            for client_uuid, client in self._clients.items():
                if client.exit is None and (status := client.handle.poll()) is not None:
                    client.exit = status
                    ended.append((client_uuid, status))
            if ended:
                self._save()
        return ended

    def exited(self, client_uuid: str) -> ProcessExited:
        """How an ended client ended, as the control plane hears it (with its log's tail if it failed)."""
        client = self._clients[client_uuid]
        assert client.exit is not None
        tail = client.handle.log_tail() if not client.exit.clean else ""
        return ProcessExited(client_uuid, client.exit.code, tail)

    def known(self) -> list[KnownClient]:
        with self._lock:
            clients = list(self._clients.items())
        return [KnownClient(u, c.exit is None, c.exit.code if c.exit else None) for u, c in clients]

    def ended(self) -> list[str]:
        with self._lock:
            return [u for u, c in self._clients.items() if c.exit is not None]

    def running(self, client_uuid: str) -> bool:
        client = self._clients.get(client_uuid)
        return client is not None and client.exit is None

    def log_path(self, client_uuid: str) -> Path:
        client = self._clients.get(client_uuid)
        if client is None:
            raise NotFound(f"no client {client_uuid} on this agent")
        return Path(client.handle.ref.log_path)

    def job_of(self, client_uuid: str) -> ClientJob:
        """The job client `client_uuid` was launched for (blank for one adopted from a previous agent)."""
        return self._jobs.get(client_uuid, ClientJob())

    def running_uuids(self) -> list[str]:
        with self._lock:
            return [u for u, c in self._clients.items() if c.exit is None]

    def any_running(self) -> bool:
        with self._lock:
            return any(c.exit is None for c in self._clients.values())

    def stop_all(self) -> None:
        live = [c for c in self._clients.values() if c.exit is None]
        for client in live:
            client.handle.terminate()
        process.terminate([c.handle.ref for c in live], self._stop_grace)
