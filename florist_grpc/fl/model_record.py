"""A saved model's file name and its record: its size and SHA-256, written by the FL server beside the file.

`round-<n>.record.json` lives in the job's model directory next to `round-<n>.safetensors`. It is written (fsynced,
then renamed into place) before the model file appears, and removed after the model file is, so a model the FL
server saved always has its record. The control plane serves a model only when its bytes match the record
(florist_grpc/jobs/artifacts.py). Why a file beside the model, not the job's store: only the FL server process
writes the model directory, which no caller can name or write; the record goes and stays with the model (a
restart, DeleteJob, a copied data dir), and it is there the moment the model is, with no report to wait for.
Standard library only: the control plane reads it without numpy or torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_FORMAT = "round-{round}.safetensors"
RECORD_FORMAT = "round-{round}.record.json"
# A record is about 100 bytes; anything much larger is not one (and is never read whole).
RECORD_LIMIT = 4096
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelRecord:
    """What a saved model file was when the FL server wrote it."""

    size_bytes: int
    sha256: str


class RecordMalformed(ValueError):
    """The record's bytes are not a record (corrupt, cut short, or something else in its place)."""


def model_name(server_round: int) -> str:
    return MODEL_FORMAT.format(round=server_round)


def record_name(server_round: int) -> str:
    return RECORD_FORMAT.format(round=server_round)


def record_path(model_dir: Path, server_round: int) -> Path:
    return model_dir / record_name(server_round)


def write_atomically(path: Path, data: bytes) -> None:
    """`data` at `path` or nothing: written to a temporary name, on disk, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)  # a crash after the rename must not leave an empty file under the final name
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_record(model_dir: Path, server_round: int, content: bytes) -> ModelRecord:
    """Record `content` (the model file's bytes, as about to be written) for `server_round`."""
    record = ModelRecord(size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest())
    text = json.dumps({"size_bytes": record.size_bytes, "sha256": record.sha256})
    write_atomically(record_path(model_dir, server_round), text.encode())
    return record


def parse_record(data: bytes) -> ModelRecord:
    """A record from its file's bytes; RecordMalformed if they are not one."""
    if len(data) > RECORD_LIMIT:
        raise RecordMalformed(f"longer than {RECORD_LIMIT} bytes")
    try:
        fields = json.loads(data)
    except (ValueError, RecursionError):
        raise RecordMalformed("not JSON") from None
    if not isinstance(fields, dict):
        raise RecordMalformed("not a JSON object")
    size, sha256 = fields.get("size_bytes"), fields.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RecordMalformed("size_bytes is not a non-negative integer")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise RecordMalformed("sha256 is not 64 lowercase hex digits")
    return ModelRecord(size_bytes=size, sha256=sha256)
