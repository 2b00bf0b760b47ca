"""Progress lines of a diverging run: its NaN/Infinity metrics arrive as strings and print as numbers."""

from __future__ import annotations

from google.protobuf import struct_pb2

from florist_grpc.progress import ROUND_ACCURACY, ROUND_LOSS, Progress
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb


def test_a_diverged_round_prints_nan_and_infinity() -> None:
    lines: list[str] = []
    progress = Progress(lines.append)
    patch = struct_pb2.Struct()
    patch.update({"rounds": {"1": {"eval_round_metrics_aggregated": {ROUND_LOSS: "Infinity", ROUND_ACCURACY: "NaN"}}}})
    progress.apply(
        pb.MetricsEvent(
            sequence=2,
            source=pb.EventSource(kind=pb.SOURCE_KIND_SERVER),
            patch=patch,
            job_state=job_pb2.JOB_STATE_IN_PROGRESS,
        )
    )
    assert lines == ["[2] round 1: val loss inf, val accuracy nan"]
    assert progress.summary()[1].split() == ["1", "inf", "nan", "nan"]
