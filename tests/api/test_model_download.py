"""DownloadModel and `florist-grpc model download`; `florist-grpc make-data --dataset digits`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from florist_grpc.fl.checkpoints import ModelSaver
from florist_grpc.fl.probe import probe
from tests.helpers import PlaneThread, job_message


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "florist_grpc", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_model_download_streams_the_saved_file_in_chunks_and_refuses_what_does_not_exist(
    plane: PlaneThread, tmp_path: Path
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
