"""`train start` of a job that must wait says so; `train stop` takes it out of the queue."""

from __future__ import annotations

import json
from pathlib import Path

from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish
from tests.cli.conftest import Invoke
from tests.helpers import job_message


def test_start_says_queued_and_stop_cancels_the_queued_job(cli: Invoke, tmp_path: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", max_running_jobs=1)
    try:
        running = create_running(plane.plane, n_clients=1)
        paths = [str(p) for p in write_synthetic(tmp_path / "data", 2, samples_per_client=64)]
        first, second = plane.create(job_message(paths)), plane.create(job_message(paths))
        text = cli("train", "start", first.id, "--address", plane.address)
        assert text.exit_code == 0 and text.stdout.startswith(f"queued {first.id}: it starts as soon as it fits")
        as_json = cli("train", "start", second.id, "--address", plane.address, "-o", "json")
        assert json.loads(as_json.stdout) == {"queued": True}
        listed = cli("job", "list", "--state", "queued", "--address", plane.address, "-q")
        assert set(listed.stdout.split()) == {first.id, second.id}
        for job_id in (first.id, second.id):
            assert cli("train", "stop", job_id, "--address", plane.address).exit_code == 0
            assert plane.get(job_id).state == job_pb2.JOB_STATE_CANCELLED
        finish(plane.plane, running)
    finally:
        plane.stop()
