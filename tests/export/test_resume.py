"""A restart whose cursors are behind what the trackers hold (a crash after the tracker's acknowledgement, before
the cursor moved) logs nothing twice: MLflow tells what the run holds, TensorBoard's files are cut back to what the
cursor covers, and both runs end complete with one value per (metric, round)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from florist_grpc.testing.plane import ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.export.conftest import history, run_of


def done(cursor: Path) -> bool:
    return cursor.exists() and json.loads(cursor.read_text())["done"]


def first_record_end(event_file: Path) -> int:
    """Where the file's first record (the file-version event every event file opens with) ends."""
    (length,) = struct.unpack("<Q", event_file.read_bytes()[:8])
    return 8 + 4 + length + 4  # length, its CRC, the event, its CRC


def test_cursors_behind_the_trackers_log_nothing_twice_after_a_restart(
    tmp_path: Path, mlflow_url: str, mlflow: MlflowClient
) -> None:
    settings = {"mlflow_tracking_uri": mlflow_url, "tensorboard_dir": tmp_path / "tensorboard"}
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", **settings)  # type: ignore[arg-type]
    job = create_running(plane.plane, n_clients=2)
    cursors = tmp_path / "florist" / "jobs" / job.job_id / "export"
    try:
        play_rounds(job, 3)
        finish(plane.plane, job)
        wait_for(lambda: done(cursors / "mlflow.json") and done(cursors / "tensorboard.json"), 60, "both runs complete")
    finally:
        plane.stop()
    before = history(mlflow, run_of(mlflow, job.job_id, "FINISHED"))
    # Back to just after the job's first event, while the trackers hold every round.
    for name in ("mlflow.json", "tensorboard.json"):
        cursor = json.loads((cursors / name).read_text())
        cursor.update(sequence=1, done=False)
        if name == "tensorboard.json":
            [event_file] = (tmp_path / "tensorboard" / job.job_id).iterdir()
            cursor["state"]["files"] = {event_file.name: first_record_end(event_file)}
        (cursors / name).write_text(json.dumps(cursor))
    again = ControlPlaneThread.in_dir(tmp_path / "florist", **settings)  # type: ignore[arg-type]
    try:
        wait_for(lambda: done(cursors / "mlflow.json") and done(cursors / "tensorboard.json"), 60, "both runs resumed")
    finally:
        again.stop()
    run = run_of(mlflow, job.job_id, "FINISHED")
    assert history(mlflow, run) == before  # every (metric, round) once, as before the restart
    events = EventAccumulator(str(tmp_path / "tensorboard" / job.job_id))
    events.Reload()
    assert events.Tags()["scalars"]
    for tag in events.Tags()["scalars"]:
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [e.value for e in events.Scalars("client1/train - loss")] == pytest.approx([1 / 2, 1 / 3, 1 / 4])
