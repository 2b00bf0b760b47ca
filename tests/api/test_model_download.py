"""DownloadModel and `florist-grpc model download`; `florist-grpc make-data --dataset digits`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from florist_grpc.fl.checkpoints import ModelSaver, model_path
from florist_grpc.fl.model_record import record_path, write_record
from florist_grpc.fl.probe import probe
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.rpc_errors import reason_of
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "florist_grpc", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_model_download_streams_the_saved_file_in_chunks_and_refuses_what_does_not_exist(
    plane: ControlPlaneThread, tmp_path: Path
) -> None:
    job = plane.create(job_message(["/d/c0.pt"]))
    out = tmp_path / "model.safetensors"
    early = cli("model", "download", job.id, "--address", plane.address, "--out", str(out))
    assert early.returncode == 1 and "FAILED_PRECONDITION" in early.stderr and "not been started" in early.stderr
    missing = cli("model", "download", "nope", "--address", plane.address, "--out", str(out))
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and not out.exists()

    # What the FL server writes after rounds 1 and 2 (3 MiB: several chunks), keeping only the latest.
    saver = ModelSaver(plane.settings.data_dir / "jobs" / job.id / "models", ["w", "b"], "MLP", [64], 10, {})
    weights = np.random.default_rng(0).normal(size=(768, 1024)).astype(np.float32)
    saver.save(1, [weights * 0, np.zeros(10, np.float32)])
    saved = saver.save(2, [weights, np.ones(10, np.float32)])
    done = cli("model", "download", job.id, "--address", plane.address, "--out", str(out), "--output", "json")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == saved.read_bytes()
    artifact = json.loads(done.stdout)
    assert artifact["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert artifact["round"] == 2 and artifact["input_shape"] == [64]
    assert np.array_equal(load_file(str(out))["w"], weights)
    gone = cli("model", "download", job.id, "--round", "1", "--address", plane.address, "--out", str(out))
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr and "saved rounds: [2]" in gone.stderr
    negative = cli("model", "download", job.id, "--round", "-1", "--address", plane.address, "--out", str(out))
    assert negative.returncode == 1 and "INVALID_ARGUMENT" in negative.stderr


def test_make_data_writes_the_digits_partitioned_over_clients(tmp_path: Path) -> None:
    done = cli(
        "make-data", "--dataset", "digits", "--partition", "dirichlet", "--alpha", "0.5", "--clients", "3",
        "--out", str(tmp_path), "--format", "csv",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 3
    summaries = [probe(p) for p in paths]
    assert all(not s["problems"] and s["input_shape"] == [64] for s in summaries)
    assert sum(s["n"] for s in summaries) == 1797 and max(s["label_max"] for s in summaries) == 9


# --- A saved model is served only as the FL server wrote it (its size and SHA-256 recorded when it was saved) ---

SAVED_BYTES = 3 << 20  # several chunks


def save_rounds(plane: ControlPlaneThread, job_id: str) -> Path:
    """What the FL server writes after rounds 1 and 2 (3 MiB each), keeping only the latest; round 2's path."""
    saver = ModelSaver(plane.plane.trainer.model_dir(job_id), ["w", "b"], "MLP", [64], 10, {})
    weights = np.random.default_rng(0).normal(size=(768, 1024)).astype(np.float32)
    saver.save(1, [weights * 0, np.zeros(10, np.float32)])
    return saver.save(2, [weights, np.ones(10, np.float32)])


@pytest.fixture
def saved(plane: ControlPlaneThread) -> tuple[str, Path]:
    """A job with its round-2 model saved."""
    job = plane.create(job_message(["/d/c0.pt"]))
    return job.id, save_rounds(plane, job.id)


def download_parts(
    plane: ControlPlaneThread, job_id: str, server_round: int = 0
) -> tuple[list[training_pb.DownloadModelResponse], grpc.RpcError | None]:
    """The messages DownloadModel sent, and the error it ended with (None: it completed)."""
    parts: list[training_pb.DownloadModelResponse] = []
    request = training_pb.DownloadModelRequest(job_id=job_id, round=server_round)
    try:
        for part in plane.training.DownloadModel(request, timeout=30):
            parts.append(part)
    except grpc.RpcError as exc:
        return parts, exc
    return parts, None


def assert_data_loss(error: grpc.RpcError | None, reason: str) -> None:
    assert isinstance(error, grpc.Call), "the download must fail"
    assert error.code() == grpc.StatusCode.DATA_LOSS, (error.code(), error.details())
    info = reason_of(error)
    assert info is not None and info.reason == reason, info


def sent_bytes(parts: list[training_pb.DownloadModelResponse]) -> int:
    return sum(len(p.chunk) for p in parts)


def test_a_flipped_byte_ends_the_download_with_data_loss_before_its_last_chunk(
    plane: ControlPlaneThread, saved: tuple[str, Path]
) -> None:
    job_id, path = saved
    original = path.read_bytes()
    content = bytearray(original)
    content[len(content) // 2] ^= 0x01  # a tensor's byte: the header still parses, only the digest can tell
    path.write_bytes(content)
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_CORRUPT")
    assert parts and parts[0].HasField("artifact"), "detected while streaming, after the artifact"
    assert parts[0].artifact.sha256 == hashlib.sha256(original).hexdigest(), "the recorded digest, not a fresh one"
    assert sent_bytes(parts) < len(content), "a client never receives the whole corrupt file"


def test_a_flipped_byte_in_the_header_is_data_loss(plane: ControlPlaneThread, saved: tuple[str, Path]) -> None:
    job_id, path = saved
    content = bytearray(path.read_bytes())
    content[8] ^= 0x01  # the header's first character: its JSON no longer parses
    path.write_bytes(content)
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_CORRUPT")
    assert sent_bytes(parts) == 0


def test_a_truncated_model_is_data_loss_before_anything_is_sent(
    plane: ControlPlaneThread, saved: tuple[str, Path]
) -> None:
    job_id, path = saved
    os.truncate(path, path.stat().st_size // 2)
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_CORRUPT")
    assert parts == []


def test_a_symlink_to_another_file_is_refused_without_reading_it(
    plane: ControlPlaneThread, saved: tuple[str, Path]
) -> None:
    job_id, path = saved
    path.unlink()
    path.symlink_to("/etc/passwd")
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_NOT_A_FILE")
    assert parts == []


def test_a_fifo_in_place_of_the_model_is_refused_at_once(plane: ControlPlaneThread, saved: tuple[str, Path]) -> None:
    job_id, path = saved
    path.unlink()
    os.mkfifo(path)  # opening it to read would block until a writer came
    started = time.monotonic()
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_NOT_A_FILE")
    assert parts == [] and time.monotonic() - started < 10


def test_a_directory_in_place_of_the_model_is_refused(plane: ControlPlaneThread, saved: tuple[str, Path]) -> None:
    job_id, path = saved
    path.unlink()
    path.mkdir()
    assert_data_loss(download_parts(plane, job_id)[1], "MODEL_NOT_A_FILE")


def test_a_model_directory_that_is_a_symlink_is_refused(plane: ControlPlaneThread, saved: tuple[str, Path]) -> None:
    job_id, path = saved
    elsewhere = path.parent.parent / "moved"
    path.parent.rename(elsewhere)
    path.parent.symlink_to(elsewhere, target_is_directory=True)
    assert_data_loss(download_parts(plane, job_id)[1], "MODEL_NOT_A_FILE")


@pytest.mark.parametrize("header_length", [2**64 - 1, 2**40, 10 * SAVED_BYTES])
def test_an_absurd_header_length_is_data_loss_and_never_allocated(
    plane: ControlPlaneThread, saved: tuple[str, Path], header_length: int
) -> None:
    """Even when the file is exactly what was recorded (so only the header's bound can refuse it)."""
    job_id, path = saved
    content = struct.pack("<Q", header_length) + path.read_bytes()[8:]
    path.write_bytes(content)
    write_record(path.parent, 2, content)
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_CORRUPT")
    assert parts == []


def test_a_model_saved_without_a_record_is_refused(plane: ControlPlaneThread, saved: tuple[str, Path]) -> None:
    job_id, path = saved
    record_path(path.parent, 2).unlink()
    assert_data_loss(download_parts(plane, job_id)[1], "MODEL_UNRECORDED")


@pytest.mark.parametrize("record", [b"", b"{", b'{"size_bytes": -1, "sha256": "00"}', b"[" * 100_000, b" " * 10_000])
def test_a_damaged_record_is_data_loss(plane: ControlPlaneThread, saved: tuple[str, Path], record: bytes) -> None:
    job_id, path = saved
    record_path(path.parent, 2).write_bytes(record)
    parts, error = download_parts(plane, job_id)
    assert_data_loss(error, "MODEL_CORRUPT")
    assert parts == []


def test_the_record_is_what_the_saver_wrote_and_goes_with_a_pruned_round(saved: tuple[str, Path]) -> None:
    _, path = saved
    record = json.loads(record_path(path.parent, 2).read_text())
    content = path.read_bytes()
    assert record == {"size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    assert not record_path(path.parent, 1).exists() and not model_path(path.parent, 1).exists()
    assert {p.name for p in path.parent.iterdir()} == {path.name, record_path(path.parent, 2).name}


def test_a_verified_download_survives_a_control_plane_restart(tmp_path: Path) -> None:
    first = ControlPlaneThread.in_dir(tmp_path / "florist")
    try:
        job_id = first.create(job_message(["/d/c0.pt"])).id
        path = save_rounds(first, job_id)
    finally:
        first.stop()
    second = ControlPlaneThread.in_dir(tmp_path / "florist")
    try:
        parts, error = download_parts(second, job_id)
    finally:
        second.stop()
    assert error is None
    assert b"".join(p.chunk for p in parts[1:]) == path.read_bytes()
    assert parts[0].artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cli_says_data_loss_with_its_reason_and_keeps_no_partial_file(
    plane: ControlPlaneThread, saved: tuple[str, Path], tmp_path: Path
) -> None:
    job_id, path = saved
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(content)
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    done = cli("model", "download", job_id, "--address", plane.address, "--out", str(out))
    assert done.returncode == 1
    # One error line, then the reason the server sent (the CLI prints every detail once).
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: DATA_LOSS: ") and lines[1:] == [
        f"  reason: MODEL_CORRUPT (job_id={job_id}, round=2)"
    ], done.stderr
    assert list(out.parent.iterdir()) == []


NODE = shutil.which("node")
TS_DIST = Path(__file__).resolve().parents[2] / "clients" / "typescript" / "dist"
# The TypeScript client's downloadModel, as its main.ts reports a failed call: the error's lines on stderr.
TS_DOWNLOAD = """
import { ConnectError } from "@connectrpc/connect";
import { connect } from "%(dist)s/connection.js";
import { downloadModel } from "%(dist)s/model-download.js";
import { describeRpcError } from "%(dist)s/rpc-error.js";
const [address, jobId, out] = process.argv.slice(1);
try {
  const { artifact } = await downloadModel(connect({ address }), jobId, out);
  console.log(artifact.sha256);
} catch (error) {
  console.error((error instanceof ConnectError ? describeRpcError(error) : [String(error)]).join("\\n"));
  process.exitCode = 2;
}
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed: the TypeScript client cannot run")
def test_the_typescript_client_reports_data_loss_and_keeps_no_partial_file(
    plane: ControlPlaneThread, saved: tuple[str, Path], tmp_path: Path
) -> None:
    assert NODE is not None
    if not (TS_DIST / "model-download.js").exists():
        pytest.fail(f"{TS_DIST} is not built: run `make clients/typescript/dist/main.js`")
    job_id, path = saved
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(content)
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    script = TS_DOWNLOAD % {"dist": TS_DIST}
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script, plane.address, job_id, str(out)],
        capture_output=True, text=True, timeout=60, check=False, cwd=TS_DIST.parent,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("DATA_LOSS: ") and "reason: MODEL_CORRUPT" in done.stderr, done.stderr
    assert list(out.parent.iterdir()) == []
