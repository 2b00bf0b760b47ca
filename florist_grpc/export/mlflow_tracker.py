"""MLflow: one run per job (run name = job id), found again by its `florist.job_id` tag, with the job's parameters
and tags, every round's metrics with the round as the step, the run's status following the job's end and the
final model as the artifact `model/round-<n>.safetensors`. Through `mlflow-skinny`'s MlflowClient (REST).

MLflow's client retries a failed request itself for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7 with exponential
backoff) and waits 120 s for an answer; the follower retries with its own backoff and says once that the tracker
is unreachable, so unless the operator set them, the client makes one attempt of at most REQUEST_TIMEOUT_SECONDS.
Nor does it print each finished run's address on standard output (a service's stdout is not a notebook's): the
address of a run made is logged once instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from florist_grpc.domain.model import Job
from florist_grpc.domain.tracking import mlflow_safe
from florist_grpc.export.cursor import JsonState
from florist_grpc.export.mlflow_run import (
    RUN_STATUS,
    end_tags,
    experiment_of,
    job_filter,
    run_params,
    run_tags,
)
from florist_grpc.export.points import Point
from florist_grpc.export.tracker import JobEnd, Logged, Opened, Tracker, TrackerRefused, TrackerUnavailable

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)
T = TypeVar("T")
REQUEST_TIMEOUT_SECONDS = 15
MAX_PARAMS_TAGS_PER_BATCH = 100  # MLflow's log_batch bound on params and tags
REASON_CHARS = 300  # of MLflow's error text in a warning (it quotes whole responses)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _sorted(exc: Exception) -> Exception:
    """No answer or a server error -> TrackerUnavailable; a 4xx -> TrackerRefused; anything else as it is."""
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS, MlflowException

    if isinstance(exc, MlflowException):
        reason = str(exc)[:REASON_CHARS]
        status = ERROR_CODE_TO_HTTP_STATUS.get(exc.error_code, 500)
        return TrackerUnavailable(reason) if status >= 500 or status == 429 else TrackerRefused(reason)
    if isinstance(exc, OSError):  # requests' errors are OSErrors; so are the artifact upload's
        return TrackerUnavailable(str(exc)[:REASON_CHARS])
    return exc


class MlflowTracker(Tracker):
    name = "mlflow"
    batch_size = 1000  # MLflow's log_batch bound on metrics

    def __init__(self, tracking_uri: str, default_experiment: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_SECONDS))
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow.tracking import MlflowClient  # imported only when MLflow is in use (it is not light)

        self._client = MlflowClient(tracking_uri=tracking_uri)
        self.target = tracking_uri
        self.title = f"MLflow at {tracking_uri}"
        self._default_experiment = default_experiment
        self._experiments: dict[str, str] = {}  # name -> id
        self._runs: dict[str, str] = {}  # job id -> run id

    def key(self, name: str) -> str:
        return mlflow_safe(name)

    def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One MLflow call, its failure sorted (see `_sorted`)."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            raise _sorted(exc) from None

    def _experiment_id(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        experiment = self._call(self._client.get_experiment_by_name, name)
        if experiment is None:
            try:
                experiment_id = self._call(self._client.create_experiment, name)
            except TrackerRefused:  # made meanwhile by another writer
                experiment = self._call(self._client.get_experiment_by_name, name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        elif experiment.lifecycle_stage != "active":
            raise TrackerRefused(f"experiment {name!r} is deleted in MLflow (restore it to log runs there)")
        else:
            experiment_id = experiment.experiment_id
        self._experiments[name] = experiment_id
        return experiment_id

    def _existing_run(self, job: Job, experiment_id: str, run_id: str) -> Run | None:
        """The job's run: the one its cursor names, else the one tagged with its id; None if there is none."""
        if run_id:
            try:
                run = self._call(self._client.get_run, run_id)
            except TrackerRefused:  # deleted for good: found by its tag, or made again
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                return run
        runs = self._call(self._client.search_runs, [experiment_id], job_filter(job.id), max_results=1)
        return runs[0] if runs else None

    def _held(self, run: Run) -> Logged:
        """Every (metric, step) the run holds: what was logged before a restart."""
        run_id = run.info.run_id
        held: Logged = set()
        for key in run.data.metrics:
            history = self._call(self._client.get_metric_history, run_id, key)
            held |= {(key, metric.step) for metric in history}
        return held

    def open(self, job: Job, state: JsonState) -> Opened:
        from mlflow.entities import Param, RunTag

        experiment_id = self._experiment_id(experiment_of(job, self._default_experiment))
        run = self._existing_run(job, experiment_id, str(state.get("run_id", "")))
        held: Logged | None = None
        if run is None:
            started = job.start_time or job.create_time
            run = self._call(
                self._client.create_run,
                experiment_id,
                start_time=_ms(started.timestamp()),
                tags=run_tags(job),
                run_name=job.id,
            )
            address = f"{self.target.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
            log.info("job %s is MLflow run %s", job.id, address)
        else:
            held = self._held(run)
        run_id = run.info.run_id
        params = [Param(key, value) for key, value in run_params(job).items()]
        tags = [RunTag(key, value) for key, value in run_tags(job).items()]
        for i in range(0, max(len(params), len(tags)), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = slice(i, i + MAX_PARAMS_TAGS_PER_BATCH)
            self._call(self._client.log_batch, run_id, params=params[chunk], tags=tags[chunk])
        self._runs[job.id] = run_id
        return Opened({"run_id": run_id, "experiment_id": experiment_id}, held)

    def _state(self, job_id: str) -> JsonState:
        return {"run_id": self._runs[job_id]}

    def log(self, job_id: str, points: list[Point]) -> JsonState:
        from mlflow.entities import Metric

        metrics = [Metric(mlflow_safe(p.name), p.value, _ms(p.time.timestamp()), p.step) for p in points]
        self._call(self._client.log_batch, self._runs[job_id], metrics=metrics)
        return self._state(job_id)

    def finish(self, job_id: str, end: JobEnd) -> JsonState:
        from mlflow.entities import RunTag

        run_id = self._runs[job_id]
        if end.model is not None:  # the same name and bytes when repeated: uploading again changes nothing
            self._call(self._client.log_artifact, run_id, str(end.model), "model")
        tags = [RunTag(key, value) for key, value in end_tags(end.state, end.error_message).items()]
        self._call(self._client.log_batch, run_id, tags=tags)
        status = RUN_STATUS[end.state]
        self._call(self._client.set_terminated, run_id, status, end_time=_ms(end.time.timestamp()))
        return self._state(job_id)

    def forget(self, job_id: str) -> None:
        self._runs.pop(job_id, None)
