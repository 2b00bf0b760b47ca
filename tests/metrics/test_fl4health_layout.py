"""Documents shaped exactly as FL4Health's reporters write them travel through ingest, StreamMetrics and
`florist-grpc train watch` unchanged and readable (real Redis, real follower, real gRPC)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from florist_grpc.cli import watch
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

    lines: list[str] = []
    assert watch(plane.channel, job.job_id, (), lines.append) == 0
    rounds = [line.split("] ", 1)[1] for line in lines if "] round " in line]
    assert rounds == [
        "round 1: val loss 1.0000, val accuracy 0.0500",
        "round 2: val loss 0.5000, val accuracy 0.1000",
        "round 3: val loss 0.3333, val accuracy 0.1500",
    ]
    summary = lines[lines.index("round  val loss  val accuracy  train accuracy") + 1 :]
    assert summary[:3] == [
        "    1    1.0000        0.0500          0.1000",
        "    2    0.5000        0.1000          0.2000",
        "    3    0.3333        0.1500          0.3000",
    ]
    assert lines[-1] == "final state: JOB_STATE_FINISHED_SUCCESSFULLY"
