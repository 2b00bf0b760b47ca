"""A job's experiment tracking (`Job.tracking`): the MLflow experiment of its run and its extra tags, the rules
CreateJob holds them to, and the names experiment trackers accept.

MLflow refuses metric, param and tag names with characters outside letters, digits, `_`, `-`, `.`, ` `, `:` and
`/`, and names that are not their own normalised path (`a//b`, `../x`, a leading `/`); it stores keys of at most
250 characters. Report names may hold anything (`$`, quotes), so `mlflow_safe` maps them onto names MLflow takes.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from florist_grpc.domain.errors import QUOTE_CHARS, FieldViolation

MAX_EXPERIMENT = 500  # MLflow's own bound on an experiment name
MAX_TAGS = 50
MAX_KEY = 250  # MLflow's bound on a metric, param or tag key
MAX_TAG_VALUE = 5000  # MLflow allows 8000; a job's tags are labels, not documents
# Tag prefixes a job may not set: MLflow's own (`mlflow.runName`, ...) and the ones the control plane sets.
RESERVED_PREFIXES = ("mlflow.", "florist.")
# What MLflow refuses in a name (outside Windows): anything but word characters, `/`, `.`, `-`, ` ` and `:`.
_REFUSED = re.compile(r"[^/\w.\- :]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TrackingConfig:
    """`experiment` empty = the control plane's default; `tags` are added to the run's own."""

    experiment: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def _not_its_own_path(name: str) -> bool:
    """MLflow's `path_not_unique`: names may become file names, so none may resolve to another."""
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def name_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` as a metric, param or tag key, or None."""
    if not name or len(name) > MAX_KEY:
        return f"must be 1-{MAX_KEY} characters"
    if _REFUSED.search(name):
        return "may hold only letters, digits, '_', '-', '.', ' ', ':' and '/'"
    if _not_its_own_path(name):
        return "must be a plain path: no '..', './', '//', leading or trailing '/'"
    return None


def mlflow_safe(name: str) -> str:
    """`name` as MLflow takes it: refused characters become `_`, a name that is not its own path has its
    slashes and leading dots replaced too, and it is cut to MLflow's key length. Two names may map onto one."""
    safe = _REFUSED.sub("_", name)[:MAX_KEY]
    if safe and not _not_its_own_path(safe):
        return safe
    safe = safe.replace("/", "_")
    if not safe or safe.startswith("."):
        safe = ("_" + safe)[:MAX_KEY]
    return safe


def experiment_problem(name: str) -> str | None:
    """Why `name` cannot name an MLflow experiment, or None (empty is the caller's to judge)."""
    if len(name) > MAX_EXPERIMENT or _CONTROL.search(name):
        return f"at most {MAX_EXPERIMENT} characters, no control characters"
    return None


def trackers_problem(mlflow_tracking_uri: str, mlflow_experiment: str) -> str | None:
    """Why `serve --mlflow-tracking-uri` / `--mlflow-experiment` cannot be used, named as the flags are; or None."""
    uri = mlflow_tracking_uri.strip()
    parsed = urlsplit(uri)
    if uri and (parsed.scheme not in ("http", "https") or not parsed.hostname):
        return f"--mlflow-tracking-uri must be the http(s):// URL of an MLflow tracking server, not {uri!r}"
    if not mlflow_experiment.strip():
        return "--mlflow-experiment must not be empty"
    if problem := experiment_problem(mlflow_experiment):
        return f"--mlflow-experiment: {problem}"
    return None


def tracking_violations(tracking: TrackingConfig, field_name: str = "job.tracking") -> list[FieldViolation]:
    """Every problem of a job's tracking settings, as field violations (`job.tracking.tags["k"]`)."""
    problems = []
    if problem := experiment_problem(tracking.experiment):
        problems.append(FieldViolation(f"{field_name}.experiment", problem))
    if len(tracking.tags) > MAX_TAGS:
        problems.append(FieldViolation(f"{field_name}.tags", f"at most {MAX_TAGS} tags"))
        return problems
    for key, value in sorted(tracking.tags.items()):
        shown = key if len(key) <= QUOTE_CHARS else key[:QUOTE_CHARS] + "..."
        path = f"{field_name}.tags[{json.dumps(shown, ensure_ascii=False)}]"
        if problem := name_problem(key):
            problems.append(FieldViolation(path, f"key {problem}"))
        elif key.startswith(RESERVED_PREFIXES):
            problems.append(FieldViolation(path, f"keys starting with {' or '.join(RESERVED_PREFIXES)} are reserved"))
        if len(value) > MAX_TAG_VALUE or "\0" in value:
            problems.append(FieldViolation(path, f"value: at most {MAX_TAG_VALUE} characters, no NUL"))
    return problems
