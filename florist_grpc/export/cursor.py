"""Where each tracker is in each job's event log, persisted beside the job's files (`jobs/<id>/export/<tracker>.json`,
removed with the job).

A cursor moves only after its tracker acknowledged everything up to `sequence`, so after a crash the tracker is at
or past it, never behind. `target` names where the tracker writes (the MLflow URI, the TensorBoard directory): a
cursor kept for another target is not ours and starts over. `state` is the tracker's own (its run id, its files).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JsonState = dict[str, Any]


@dataclass(frozen=True)
class Cursor:
    target: str
    sequence: int = 0
    # The job's terminal event was acknowledged: the run is complete.
    done: bool = False
    state: JsonState = field(default_factory=dict)


class Cursors:
    """One tracker's cursors, one small JSON file per job, replaced atomically (write, fsync, rename)."""

    def __init__(self, jobs_dir: Path, tracker: str) -> None:
        self._jobs_dir = jobs_dir
        self._name = f"{tracker}.json"

    def _path(self, job_id: str) -> Path:
        return self._jobs_dir / job_id / "export" / self._name

    def load(self, job_id: str) -> Cursor | None:
        """The job's cursor, or None if there is none (or it is unreadable: the tracker re-derives instead)."""
        try:
            data = json.loads(self._path(job_id).read_text())
            return Cursor(str(data["target"]), int(data["sequence"]), bool(data["done"]), dict(data["state"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, job_id: str, cursor: Cursor) -> None:
        path = self._path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(cursor), f)
            f.flush()
            os.fsync(f.fileno())  # a crash after the rename must not leave an empty cursor
        os.replace(tmp, path)

    def unfinished(self) -> list[str]:
        """Jobs whose cursor is not done: their runs were left incomplete when the control plane stopped."""
        found = []
        for path in self._jobs_dir.glob(f"*/export/{self._name}"):
            job_id = path.parent.parent.name
            cursor = self.load(job_id)
            if cursor is None or not cursor.done:
                found.append(job_id)
        return sorted(found)
