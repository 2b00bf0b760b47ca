"""The FL server's saved global models: `round-<n>.safetensors` in the job's model directory.

Tensor names are the model's state_dict keys; the header's metadata says what the model is (catalog name, its
sizes and model_config, the round), so the file can be rebuilt into the module without the job. The latest
round's file is always kept; an older one only when `checkpoint_rounds` (server_config) is N > 0 and its round
is a multiple of N. Each file has its record (size and SHA-256, florist_grpc/fl/model_record.py): the control
plane serves a model only as it was written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

from florist_grpc.fl.model_record import model_name, record_path, write_atomically, write_record


def model_path(model_dir: Path, server_round: int) -> Path:
    return model_dir / model_name(server_round)


class ModelSaver:
    def __init__(
        self,
        model_dir: Path,
        keys: list[str],
        model: str,
        input_shape: list[int],
        num_classes: int,
        model_config: dict[str, Any],
        checkpoint_rounds: int = 0,
    ) -> None:
        self._dir = model_dir
        self._keys = keys
        self._every = checkpoint_rounds
        self._metadata = {
            "model": model,
            "input_shape": json.dumps(input_shape),
            "num_classes": str(num_classes),
            "model_config": json.dumps(model_config, sort_keys=True),
        }
        self._previous = 0

    def save(self, server_round: int, arrays: list[np.ndarray]) -> Path:
        """Write the round's global model and its record atomically, then drop the previous round's unless kept.

        The record is hashed from the bytes meant for the file (not read back), and is in place before the file
        appears; the previous round's record goes after its file: a saved model never lacks its record.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        path = model_path(self._dir, server_round)
        tensors = {k: np.ascontiguousarray(a) for k, a in zip(self._keys, arrays, strict=True)}
        content = save(tensors, metadata={**self._metadata, "round": str(server_round)})
        write_record(self._dir, server_round, content)
        write_atomically(path, content)  # a reader never sees half a file
        _sync_directory(self._dir)  # both renames on disk before the round counts as saved
        previous, self._previous = self._previous, server_round
        if previous and not (self._every > 0 and previous % self._every == 0):
            model_path(self._dir, previous).unlink(missing_ok=True)
            record_path(self._dir, previous).unlink(missing_ok=True)
        return path


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
