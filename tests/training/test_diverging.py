"""A diverging run (NaN and infinite losses) is a run like any other: it finishes, with every round stored."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.proto.florist.v1 import job_pb2
from tests.helpers import PlaneThread, job_message, no_fl_process_left

NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def non_finite_values(value: Any) -> list[str]:
    """Every value that says a number diverged (stored as strings; a float NaN would not have been stored)."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in non_finite_values(item)]
    if isinstance(value, list):
        return [v for item in value for v in non_finite_values(item)]
    assert not (isinstance(value, float) and not math.isfinite(value))
    return [value] if value in NON_FINITE else []


@pytest.mark.slow
def test_fedadam_with_a_huge_server_learning_rate_diverges_and_still_finishes_with_every_round(
    plane: PlaneThread, tmp_path: Path
) -> None:
    paths = [str(p) for p in write_synthetic(tmp_path, 2, samples_per_client=120)]
    rounds = 4
    # The largest rates the catalog allows: FedAdam moves every weight by ~eta per round and the clients' local
    # steps blow the losses up to Infinity by round 3 and NaN by round 4 (with the default eta of 0.1 they stay
    # finite: bench-checked offline with the same model, data and seeds).
    message = job_message(
        paths, rounds=rounds, strategy="FEDADAM", server_learning_rate=1000.0, learning_rate=10.0, local_epochs=6
    )
    job = plane.create(message)
    plane.start(job.id)
    events = plane.events(job.id, timeout=300)
    done = plane.get(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    server = json_format.MessageToDict(done.server_metrics)
    assert sorted(server["rounds"]) == [str(n) for n in range(1, rounds + 1)]
    for n in range(1, rounds + 1):
        assert {"fit_round_end", "eval_round_end"} <= set(server["rounds"][str(n)]), n
    assert "fit_end" in server
    diverged = non_finite_values(server) + [
        v for c in done.clients for v in non_finite_values(json_format.MessageToDict(c.metrics))
    ]
    assert diverged, "the run was expected to diverge"
    no_fl_process_left()
