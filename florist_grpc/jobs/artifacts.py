"""A job's saved global models (written by the FL server, florist_grpc/fl/checkpoints.py), served for download.

The control plane reads only the safetensors header (8-byte length + JSON), so it needs no torch. A file is
opened once and served from that open file: the FL server may prune an older round meanwhile without harm.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from florist_grpc.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from florist_grpc.domain.model import Job, JobState

CHUNK_BYTES = 1 << 20  # well under gRPC's default 4 MiB message limit
_NAME = re.compile(r"^round-(\d+)\.safetensors$")


@dataclass(frozen=True)
class ModelFile:
    round: int
    size_bytes: int
    sha256: str
    model: str
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)


def saved_rounds(model_dir: Path) -> list[int]:
    """Rounds whose model is on disk, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_dir.iterdir() if (m := _NAME.match(p.name)))


def _header(f: BinaryIO) -> dict[str, str]:
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))
    metadata: dict[str, str] = header.get("__metadata__", {})
    return metadata


def _describe(f: BinaryIO, job: Job, server_round: int) -> ModelFile:
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    f.seek(0)
    meta = _header(f)
    f.seek(0)
    return ModelFile(
        round=server_round,
        size_bytes=size,
        sha256=digest.hexdigest(),
        model=meta.get("model", job.model),
        input_shape=[int(d) for d in json.loads(meta.get("input_shape", "[]"))],
        num_classes=int(meta.get("num_classes", "0")),
        model_config=json.loads(meta.get("model_config", "{}")),
    )


def open_model(job: Job, model_dir: Path, server_round: int) -> tuple[ModelFile, BinaryIO]:
    """The artifact of `server_round` (0 = the last saved) and its file, open at its start."""
    if server_round < 0:
        raise InvalidArgument([FieldViolation("round", "must not be negative (0 = the final model)")])
    rounds = saved_rounds(model_dir)
    if not rounds:
        if job.state is JobState.NOT_STARTED:
            raise FailedPrecondition(f"job {job.id} has not been started: no model was trained yet")
        raise FailedPrecondition(f"job {job.id} ({job.state.name}) has not saved a model: no round completed")
    chosen = server_round or rounds[-1]
    try:
        f = open(model_dir / f"round-{chosen}.safetensors", "rb")  # noqa: SIM115 -- closed by the caller
    except FileNotFoundError:
        raise NotFound(
            f"job {job.id} has no saved model for round {chosen}; saved rounds: {rounds} "
            "(server_config checkpoint_rounds decides which earlier rounds are kept)"
        ) from None
    try:
        return _describe(f, job, chosen), f
    except Exception:
        f.close()
        raise


async def download(job: Job, model_dir: Path, server_round: int) -> AsyncIterator[ModelFile | bytes]:
    """The artifact, then the file's bytes in chunks."""
    artifact, f = await asyncio.to_thread(open_model, job, model_dir, server_round)
    try:
        yield artifact
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            yield chunk
    finally:
        f.close()
