"""A job's final model for a tracker: the file DownloadModel serves for round 0, checked the same way (size and
SHA-256 against the record the FL server wrote), copied under its own name `round-<n>.safetensors` into a scratch
directory for as long as the tracker uploads it. A model that fails its check is not handed on."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from florist_grpc.domain.errors import DataLoss, FailedPrecondition, NotFound
from florist_grpc.domain.model import Job
from florist_grpc.fl.model_record import model_name
from florist_grpc.jobs.artifacts import CHUNK_BYTES, open_model

log = logging.getLogger(__name__)


@contextlib.contextmanager
def final_model(job: Job, model_dir: Path) -> Iterator[Path | None]:
    """The job's last saved model as a verified file, or None when it saved none (or it is corrupt: said once)."""
    try:
        artifact, f = open_model(job, model_dir, 0)
    except (FailedPrecondition, NotFound):
        yield None  # no round completed: nothing to upload
        return
    except DataLoss as exc:
        log.warning("job %s: its final model is not exported: %s", job.id, exc)
        yield None
        return
    with f, tempfile.TemporaryDirectory(prefix="florist-export-") as scratch:
        path = Path(scratch) / model_name(artifact.round)
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != artifact.sha256:
            log.warning(
                "job %s: its final model does not match the SHA-256 recorded when it was saved; not exported", job.id
            )
            yield None
            return
        yield path


def final_models(model_dir: Callable[[str], Path]) -> Callable[[Job], contextlib.AbstractContextManager[Path | None]]:
    """`final_model` over the jobs' model directories (`Trainer.model_dir`)."""
    return lambda job: final_model(job, model_dir(job.id))
