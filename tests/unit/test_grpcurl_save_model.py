"""examples/grpcurl/save_model.py: grpcurl's DownloadModel output (pretty-printed JSON objects one after another,
bytes in base64) to a file, written only when its size and SHA-256 match the artifact's."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "grpcurl" / "save_model.py"
MODEL = bytes(range(256)) * 40


def grpcurl_output(data: bytes, chunk: int = 1000, **artifact_overrides: object) -> str:
    artifact = {
        "format": "safetensors",
        "round": 2,
        "size_bytes": str(len(data)),  # proto3 JSON: 64-bit integers are strings
        "sha256": hashlib.sha256(data).hexdigest(),
        "model": "MLP",
        **artifact_overrides,
    }
    parts = [{"artifact": artifact}]
    parts += [{"chunk": base64.b64encode(data[i : i + chunk]).decode()} for i in range(0, len(data), chunk)]
    return "\n".join(json.dumps(p, indent=2) for p in parts) + "\n"


def save(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "model.json").write_text(text)
    command = [sys.executable, str(SCRIPT), str(tmp_path / "model.json"), str(tmp_path / "model.safetensors")]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_chunks_are_joined_into_the_file_and_checked(tmp_path: Path) -> None:
    done = save(tmp_path, grpcurl_output(MODEL))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.safetensors").read_bytes() == MODEL
    assert "MLP after round 2, 10240 bytes" in done.stdout


def test_a_missing_chunk_writes_nothing_and_says_so(tmp_path: Path) -> None:
    text = grpcurl_output(MODEL)
    truncated = text[: text.rindex('{\n  "chunk"')]
    done = save(tmp_path, truncated)
    assert done.returncode == 1 and "size or SHA-256 mismatch" in done.stderr
    assert not list(tmp_path.glob("model.safetensors*"))


def test_a_corrupted_chunk_writes_nothing(tmp_path: Path) -> None:
    done = save(tmp_path, grpcurl_output(MODEL, sha256=hashlib.sha256(b"other").hexdigest()))
    assert done.returncode == 1 and not list(tmp_path.glob("model.safetensors*"))
