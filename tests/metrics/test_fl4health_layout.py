"""Documents shaped exactly as FL4Health's reporters write them travel through ingest, StreamMetrics and
`florist-grpc train watch` unchanged and readable (real Redis, real follower, real gRPC)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from google.protobuf import json_format

from florist_grpc.domain import merge_patch
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing import simulation
from tests.helpers import PlaneThread


def test_fl4health_shaped_reports_round_trip_and_train_watch_reads_them(plane: PlaneThread) -> None:
    job = simulation.create_running(plane.plane, n_clients=2)
    simulation.play_rounds(job, 3)
    simulation.finish(plane.plane, job)

    rebuilt: dict[str, dict[str, Any]] = {}
    for event in plane.events(job.job_id):
        if event.source.kind == pb.SOURCE_KIND_JOB:
            continue
        key = "server" if event.source.kind == pb.SOURCE_KIND_SERVER else f"client{event.source.client_index}"
        rebuilt[key] = merge_patch.apply(rebuilt.get(key, {}), json_format.MessageToDict(event.patch))
    for key, reporter in job.reporters.items():
        assert rebuilt[key] == reporter.report, key  # every key, nesting and value exactly
    server_round = rebuilt["server"]["rounds"]["2"]
    assert server_round["val - loss - aggregated"] == 0.5  # at round level, as FL4Health writes it
    assert server_round["eval_round_metrics_aggregated"] == {"val - prediction - accuracy": 0.1}
    assert rebuilt["client1"]["rounds"]["3"]["eval_round_loss"] == 1 / 3  # a number, not a dict

    watched = subprocess.run(
        [sys.executable, "-m", "florist_grpc", "train", "watch", job.job_id, "--address", plane.address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert watched.returncode == 0, watched.stderr
    assert "round 1/3: val loss 1.0000" in watched.stdout and "round 3/3: val loss 0.3333" in watched.stdout
    assert "val accuracy 0.1500" in watched.stdout  # read from eval_round_metrics_aggregated, no suffix
    assert watched.stdout.splitlines()[-1].startswith("final state: JOB_STATE_FINISHED_SUCCESSFULLY")
