"""What a job's MLflow run says about the job, as plain values: its experiment, parameters, tags and end status.

Pure (no MLflow import): the tracker (export/mlflow_tracker.py) sends these. Names go through `mlflow_safe`, values
are cut to what MLflow stores, so the same job always gives the same values: a parameter logged again after a
restart is the same, which MLflow accepts (it refuses a parameter that changes).
"""

from __future__ import annotations

import json
from typing import Any

from florist_grpc.domain.model import Job, JobState
from florist_grpc.domain.tracking import mlflow_safe

MAX_PARAM_VALUE = 6000  # MLflow's bound on a parameter's value
MAX_TAG_VALUE = 8000  # and on a tag's
JOB_ID_TAG = "florist.job_id"
PROJECT_TAG = "florist.project"
OWNER_TAG = "florist.owner"
STATE_TAG = "florist.state"
ERROR_TAG = "florist.error_message"

# How a job's end reads as a run's status.
RUN_STATUS = {
    JobState.FINISHED_SUCCESSFULLY: "FINISHED",
    JobState.FINISHED_WITH_ERROR: "FAILED",
    JobState.CANCELLED: "KILLED",
}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def experiment_of(job: Job, default: str) -> str:
    """The job's own experiment (Job.tracking), else the control plane's (`--mlflow-experiment`)."""
    return job.tracking.experiment or default


def run_params(job: Job) -> dict[str, str]:
    """The job's definition: catalog names, the number of clients, and each key of server_config and
    model_config as a parameter of its own (`server_config.n_server_rounds`), so runs compare by them."""
    params = {
        "model": job.model,
        "strategy": job.strategy,
        "optimizer": job.optimizer,
        "client_type": job.client_type,
        "clients": str(len(job.clients)),
    }
    for section, config in (("server_config", job.server_config), ("model_config", job.model_config)):
        for key, value in sorted(config.items()):
            params[f"{section}.{key}"] = _text(value)
    return {mlflow_safe(key): _cut(value, MAX_PARAM_VALUE) for key, value in params.items()}


def run_tags(job: Job) -> dict[str, str]:
    """The job's own tags (Job.tracking.tags, validated at CreateJob), then the ones that find the job again."""
    tags = dict(job.tracking.tags)
    tags[JOB_ID_TAG] = job.id
    tags[PROJECT_TAG] = job.project
    if job.owner:  # empty only for jobs stored before owners existed
        tags[OWNER_TAG] = job.owner
    return {key: _cut(value, MAX_TAG_VALUE) for key, value in tags.items()}


def end_tags(state: JobState, error_message: str) -> dict[str, str]:
    """Tags saying how the job ended (the status alone does not say why it failed)."""
    tags = {STATE_TAG: state.name}
    if error_message:
        tags[ERROR_TAG] = _cut(error_message, MAX_TAG_VALUE)
    return tags


def job_filter(job_id: str) -> str:
    """MLflow's search filter for the run of a job (job ids are hex: nothing to escape)."""
    return f"tags.`{JOB_ID_TAG}` = '{job_id}'"
