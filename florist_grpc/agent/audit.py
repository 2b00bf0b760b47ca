"""The agent's audit log: one JSON line for every launch, stop and data check it performs (or refuses), saying who
asked (the job's owner), what, for which job and client, and how it came out. Never any data: paths and names only.

By default the log is `DATA_ROOT/.florist-agent/audit.jsonl`: it outlives the agent process (a site answers for
what ran on its data long after), it is apart from the operational log (which a supervisor may rotate or drop), and
no FL client can read it (the agent's state directory is refused as a data path). `--audit-log FILE` puts it
elsewhere; `--audit-log -` writes it to stderr (for a container whose stderr is collected).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from florist_grpc.launch.agent_protocol import ClientJob

STDERR = Path("-")
# Who asked for what the agent does itself (stopping its clients as it shuts down).
THE_AGENT = "agent"


class AuditLog:
    """Appends one JSON object per line; safe from any thread (launches and stops run in worker threads)."""

    def __init__(self, agent: str, path: Path) -> None:
        self._agent = agent
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def open(self) -> None:
        if self.path == STDERR:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Appended, never truncated; readable by the agent's user alone (it names jobs, owners and files).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def record(
        self,
        what: str,
        job: ClientJob,
        outcome: str,
        *,
        client: str = "",
        data_path: str = "",
        reason: str = "",
        who: str = "",
    ) -> None:
        """One line: `what` (launch, stop, check_data, probe_data) for `job`'s client, its `outcome` (ok,
        refused, failed) and why (`reason`)."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "agent": self._agent,
            "who": who or job.owner or "control plane",
            "what": what,
            "job": job.id,
            "project": job.project,
            "model": job.model,
            "client": client or (f"#{job.client_index}" if job.id else ""),
            "data_path": data_path,
            "outcome": outcome,
            "reason": reason,
        }
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line)  # one write of a whole line to an O_APPEND file: lines never interleave
            elif self.path == STDERR:
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
