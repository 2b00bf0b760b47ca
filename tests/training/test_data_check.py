"""StartTraining checks every client's data before launching anything; a refused job stays NOT_STARTED."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch

from florist_grpc.domain.catalog import BUILTIN_MODELS
from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.jobs.data_check import DataShape, decide_shape
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.rpc_errors import field_violations
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import fl_processes, job_message, no_fl_process_left


def refused(plane: ControlPlaneThread, message: job_pb2.Job) -> tuple[str, dict[str, str]]:
    """Start the job, expect FAILED_PRECONDITION; the job id and its field violations."""
    job = plane.create(message)
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION, raised.value.details()
    assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED  # nothing moved, nothing launched
    assert not fl_processes()
    violations = field_violations(raised.value)  # type: ignore[arg-type]
    return job.id, {v.field: v.description for v in violations}


def bad_file(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.pt"
    if case == "malformed":
        path.write_bytes(b"\x00 not a torch file")
    elif case == "wrong_dtype":
        torch.save({"x": torch.zeros(8, 20, dtype=torch.complex64), "y": torch.zeros(8, dtype=torch.long)}, path)
    elif case == "float_labels":
        torch.save({"x": torch.zeros(8, 20), "y": torch.zeros(8)}, path)
    elif case == "other_shape":
        torch.save({"x": torch.zeros(8, 7), "y": torch.zeros(8, dtype=torch.long)}, path)
    return path  # "missing": never written


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("malformed", "unreadable"),
        ("wrong_dtype", "real numbers"),
        ("float_labels", "integer class labels"),
        ("other_shape", "samples of client 1 are shaped [7], client 0 needs [20]"),
    ],
)
def test_a_bad_data_file_is_refused_naming_the_client_and_the_file(
    plane: ControlPlaneThread, demo_data: list[str], tmp_path: Path, case: str, expected: str
) -> None:
    path = bad_file(tmp_path, case)
    _, violations = refused(plane, job_message([demo_data[0], str(path)], rounds=1))
    assert set(violations) == {"job.clients[1].data_path"}
    assert str(path) in violations["job.clients[1].data_path"]
    assert expected in violations["job.clients[1].data_path"]


def test_labels_out_of_a_fixed_models_range_and_mis_shaped_images_are_refused(
    plane: ControlPlaneThread, tmp_path: Path, demo_data: list[str]
) -> None:
    images = tmp_path / "images.pt"
    torch.save({"x": torch.zeros(8, 1, 28, 28), "y": torch.tensor([0, 1, 2, 3, 4, 5, 6, 12])}, images)
    message = job_message([str(images), demo_data[0]], rounds=1)
    message.model = "MNIST_CNN"
    _, violations = refused(plane, message)
    assert "labels must be in 0..9" in violations["job.clients[0].data_path"]
    assert "needs [1, 28, 28]" in violations["job.clients[1].data_path"]


def test_a_refused_job_starts_once_its_file_is_fixed(plane: ControlPlaneThread, tmp_path: Path) -> None:
    fixed = tmp_path / "later.pt"
    paths = [str(p) for p in write_synthetic(tmp_path / "ok", 1, samples_per_client=120)] + [str(fixed)]
    job_id, violations = refused(plane, job_message(paths, rounds=1))
    assert "does not exist" in violations["job.clients[1].data_path"]
    write_synthetic(tmp_path / "fix", 1, samples_per_client=120)[0].rename(fixed)
    plane.start(job_id)
    assert plane.events(job_id)[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    no_fl_process_left()


def summary(shape: list[int], label_max: int, problems: list[str] | None = None) -> dict[str, object]:
    return {
        "path": "/d",
        "n": 10,
        "input_shape": shape,
        "label_min": 0,
        "label_max": label_max,
        "problems": problems or [],
    }


def test_sizes_come_from_the_data_or_the_catalog_entry() -> None:
    mlp, cnn = BUILTIN_MODELS["MLP"], BUILTIN_MODELS["MNIST_CNN"]
    assert decide_shape(mlp, {0: summary([64], 9), 1: summary([64], 4)}) == DataShape((64,), 10)
    assert decide_shape(cnn, {0: summary([1, 28, 28], 3)}) == DataShape((1, 28, 28), 10)
    with pytest.raises(FailedPrecondition) as raised:
        decide_shape(BUILTIN_MODELS["CNN"], {0: summary([64], 9)})  # a CNN needs [channels, height, width]
    assert "3 dimensions" in raised.value.violations[0].description
    # An agent-run client's data (None: not readable here) does not block sizes the others decide.
    assert decide_shape(mlp, {0: summary([5], 1), 1: None}) == DataShape((5,), 2)
    with pytest.raises(FailedPrecondition) as raised:
        decide_shape(mlp, {0: None})
    assert [v.field for v in raised.value.violations] == ["job.clients[0].data_path"]
    with pytest.raises(FailedPrecondition) as raised:
        decide_shape(mlp, {0: summary([5], 0)})  # a single class: nothing to learn
    assert "2+" in str(raised.value.violations)
