"""TensorBoard: event files under `DIR/<job id>/`, one scalar per metric per round (step = round), tags as the
reports name them (`val - loss - aggregated`, `client0/val - loss`), readable by a stock `tensorboard --logdir DIR`.

Written with tensorboardX's EventsWriter (standalone: numpy and protobuf; torch's SummaryWriter would need the
whole `tensorboard` package at run time), synchronously and fsynced before a batch counts as acknowledged. Each
control-plane session appends to a file of its own; the cursor keeps every file's size at its last
acknowledgement, and a resumed job first cuts its files back to those sizes (a file no acknowledgement covered is
removed), so what a crash left half-written is written once more, not twice.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

from florist_grpc.domain.model import Job
from florist_grpc.export.cursor import JsonState
from florist_grpc.export.points import Point
from florist_grpc.export.tracker import JobEnd, Opened, Tracker, TrackerUnavailable

EVENT_FILE_PREFIX = "events.out.tfevents."


class _JobFiles:
    """One job's event files: this session's writer, and every file's acknowledged size."""

    def __init__(self, run_dir: Path, sizes: dict[str, int]) -> None:
        self.run_dir = run_dir
        self.sizes = sizes
        self._writer: EventsWriter | None = None
        self._suffix = f".florist-{uuid.uuid4().hex[:12]}"  # unique: no session ever reopens another's file

    def writer(self) -> EventsWriter:
        if self._writer is None:
            self._writer = EventsWriter(str(self.run_dir / "events"), self._suffix)
        return self._writer

    def acknowledged(self) -> JsonState:
        """Flush and fsync this session's file; every file's size, as the cursor keeps them."""
        if self._writer is not None:
            self._writer.flush()
            for path in self.run_dir.glob(f"{EVENT_FILE_PREFIX}*{self._suffix}"):
                self.sizes[path.name] = path.stat().st_size
        return {"files": dict(self.sizes)}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, directory: Path) -> None:
        self._directory = directory.resolve()
        self.target = str(self._directory)
        self.title = f"TensorBoard directory {self._directory}"
        self._jobs: dict[str, _JobFiles] = {}

    def open(self, job: Job, state: JsonState) -> Opened:
        run_dir = self._directory / job.id
        sizes = {str(name): int(size) for name, size in dict(state.get("files", {})).items()}
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            for path in run_dir.iterdir():
                if not path.name.startswith(EVENT_FILE_PREFIX):
                    continue
                acknowledged = sizes.get(path.name)
                if acknowledged is None:
                    path.unlink()  # no acknowledgement covers it: its events are written again
                elif path.stat().st_size > acknowledged:
                    os.truncate(path, acknowledged)
        except OSError as exc:  # a full or unmounted disk: tried again with backoff, like an unreachable server
            raise TrackerUnavailable(str(exc)) from None
        self._jobs[job.id] = _JobFiles(run_dir, sizes)
        # No file at all: nothing was logged, everything goes in; else the files hold what the cursor covers.
        return Opened({"files": sizes}, set() if sizes else None)

    def log(self, job_id: str, points: list[Point]) -> JsonState:
        files = self._jobs[job_id]
        try:
            writer = files.writer()
            for point in points:
                summary = Summary(value=[Summary.Value(tag=point.name, simple_value=point.value)])
                writer.write_event(Event(wall_time=point.time.timestamp(), step=point.step, summary=summary))
            return files.acknowledged()
        except OSError as exc:
            raise TrackerUnavailable(str(exc)) from None

    def finish(self, job_id: str, end: JobEnd) -> JsonState:
        files = self._jobs[job_id]
        try:
            return files.acknowledged()
        except OSError as exc:
            raise TrackerUnavailable(str(exc)) from None

    def forget(self, job_id: str) -> None:
        files = self._jobs.pop(job_id, None)
        if files is not None:
            files.close()

    def close(self) -> None:
        for job_id in list(self._jobs):
            self.forget(job_id)
