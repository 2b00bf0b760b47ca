"""A job's saved global models (written by the FL server, florist_grpc/fl/checkpoints.py), served for download.

A model is served only as the FL server wrote it: a regular file in the job's model directory (no symlink, FIFO
or directory; opened without following links, relative to the directory's own descriptor), whose size and
SHA-256 match the record written with it (florist_grpc/fl/model_record.py). Anything else is DATA_LOSS. The size
is checked before anything is sent; the digest while streaming, and the last chunk is held back until it matches,
so a client never receives the whole of a corrupt file. The control plane reads only the safetensors header
(8-byte length + JSON, bounded), so it needs no torch. A file is opened once and served from that open file: the
FL server may prune an older round meanwhile without harm.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import stat
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from florist_grpc.domain.errors import DataLoss, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from florist_grpc.domain.model import Job, JobState
from florist_grpc.fl import model_record
from florist_grpc.fl.model_record import ModelRecord, RecordMalformed

CHUNK_BYTES = 1 << 20  # well under gRPC's default 4 MiB message limit
# Our headers hold one short entry per tensor plus the metadata: kilobytes. safetensors' own reader refuses
# headers over 100 MB; a control plane reading many downloads at once allows far less.
HEADER_LIMIT = 16 << 20
_NAME = re.compile(r"^round-(\d+)\.safetensors$")
# Never follow a link; O_NONBLOCK so that opening a FIFO returns at once (it is then refused as not a file).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


def _corrupt(job: Job, server_round: int, what: str) -> DataLoss:
    return DataLoss(
        f"job {job.id}'s model of round {server_round} is corrupt: {what}; it is not served",
        reason="MODEL_CORRUPT",
        metadata={"job_id": job.id, "round": str(server_round)},
    )


def _not_a_file(job: Job, server_round: int, what: str) -> DataLoss:
    return DataLoss(
        f"job {job.id}'s model of round {server_round} is not the file the FL server wrote: {what}",
        reason="MODEL_NOT_A_FILE",
        metadata={"job_id": job.id, "round": str(server_round)},
    )


def _open_directory(job: Job, model_dir: Path, server_round: int) -> int:
    """The job's model directory, itself and every part of its path no symlink (`model_dir` comes resolved)."""
    if os.path.realpath(model_dir) != str(model_dir):
        raise _not_a_file(job, server_round, "its directory is reached through a symbolic link")
    try:
        return os.open(model_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _not_a_file(job, server_round, f"its directory cannot be opened ({exc.strerror})") from None


def _open_regular(directory: int, name: str) -> int:
    """`name` in `directory`, opened to read if it is a regular file; OSError (ELOOP, EISDIR, ...) if not."""
    fd = os.open(name, _OPEN_FLAGS, dir_fd=directory)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def _record(job: Job, directory: int, server_round: int) -> ModelRecord | None:
    try:
        fd = _open_regular(directory, model_record.record_name(server_round))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _not_a_file(job, server_round, f"its record is not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(model_record.RECORD_LIMIT + 1)
    try:
        return model_record.parse_record(data)
    except RecordMalformed as exc:
        raise _corrupt(job, server_round, f"its record is malformed ({exc})") from None


def _header(job: Job, server_round: int, f: BinaryIO, size: int) -> dict[str, str]:
    """The header's `__metadata__`, its length bounded before anything is allocated for it."""
    if size < 8:
        raise _corrupt(job, server_round, "shorter than a safetensors header")
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(HEADER_LIMIT, size - 8):
        raise _corrupt(job, server_round, f"its header claims {length} bytes, more than the file or {HEADER_LIMIT}")
    try:
        header = json.loads(f.read(length))
    except (ValueError, RecursionError):
        raise _corrupt(job, server_round, "its header is not JSON") from None
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _corrupt(job, server_round, "its header's metadata is not a map of strings")
    return metadata


def _describe(job: Job, server_round: int, meta: dict[str, str], record: ModelRecord) -> ModelFile:
    try:
        input_shape = [int(d) for d in json.loads(meta.get("input_shape", "[]"))]
        model_config = json.loads(meta.get("model_config", "{}"))
        num_classes = int(meta.get("num_classes", "0"))
    except (ValueError, TypeError, RecursionError):
        raise _corrupt(job, server_round, "its header's metadata does not describe a model") from None
    if not isinstance(model_config, dict):
        raise _corrupt(job, server_round, "its header's model_config is not a map")
    return ModelFile(
        round=server_round,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        model=meta.get("model", job.model),
        input_shape=input_shape,
        num_classes=num_classes,
        model_config=model_config,
    )


def _open_file(job: Job, directory: int, server_round: int) -> tuple[ModelFile, BinaryIO]:
    # The record first: it is written before its model appears and removed after it goes (fl/checkpoints.py),
    # so a model opened after its record was found missing was saved without one.
    record = _record(job, directory, server_round)
    try:
        fd = _open_regular(directory, model_record.model_name(server_round))
    except FileNotFoundError:
        raise NotFound(f"job {job.id} has no saved model for round {server_round} (pruned meanwhile)") from None
    except OSError as exc:
        raise _not_a_file(job, server_round, f"a symbolic link, FIFO, directory or device ({exc.strerror})") from None
    f = os.fdopen(fd, "rb")
    try:
        if record is None:
            raise DataLoss(
                f"job {job.id}'s model of round {server_round} has no record of its size and SHA-256 "
                "(saved by an older florist-grpc, or the record was lost); it cannot be verified, so it is not served",
                reason="MODEL_UNRECORDED",
                metadata={"job_id": job.id, "round": str(server_round)},
            )
        size = os.fstat(fd).st_size
        if size != record.size_bytes:
            raise _corrupt(job, server_round, f"{size} bytes on disk, {record.size_bytes} when saved")
        meta = _header(job, server_round, f, size)
        f.seek(0)
        return _describe(job, server_round, meta, record), f
    except BaseException:
        f.close()
        raise


def open_model(job: Job, model_dir: Path, server_round: int) -> tuple[ModelFile, BinaryIO]:
    """The artifact of `server_round` (0 = the last saved) and its file, open at its start and checked
    against its record's size (its digest is checked while it is read: `download`)."""
    if server_round < 0:
        raise InvalidArgument([FieldViolation("round", "must not be negative (0 = the final model)")])
    rounds = saved_rounds(model_dir)
    if not rounds:
        if job.state is JobState.NOT_STARTED:
            raise FailedPrecondition(f"job {job.id} has not been started: no model was trained yet")
        raise FailedPrecondition(f"job {job.id} ({job.state.name}) has not saved a model: no round completed")
    chosen = server_round or rounds[-1]
    if chosen not in rounds:
        raise NotFound(
            f"job {job.id} has no saved model for round {chosen}; saved rounds: {rounds} "
            "(server_config checkpoint_rounds decides which earlier rounds are kept)"
        )
    directory = _open_directory(job, model_dir, chosen)
    try:
        return _open_file(job, directory, chosen)
    finally:
        os.close(directory)


async def download(job: Job, model_dir: Path, server_round: int) -> AsyncIterator[ModelFile | bytes]:
    """The artifact, then the file's bytes in chunks; DataLoss instead of the last chunk if the bytes read do
    not match the record."""
    artifact, f = await asyncio.to_thread(open_model, job, model_dir, server_round)
    try:
        yield artifact
        digest, size = hashlib.sha256(), 0
        held = b""
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if held:
                yield held
            held = chunk
        if size != artifact.size_bytes or digest.hexdigest() != artifact.sha256:
            raise _corrupt(job, artifact.round, "its bytes do not match the SHA-256 recorded when it was saved")
        if held:
            yield held
    finally:
        f.close()
