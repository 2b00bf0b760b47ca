"""CreateJob validation: every problem of a job is found and reported at once, as field violations."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from florist_grpc.domain.catalog import DEFAULT_CATALOG, MAX_CLIENTS, STRATEGIES, Catalog, JsonSchema
from florist_grpc.domain.errors import QUOTE_CHARS, FieldViolation, InvalidArgument, quote
from florist_grpc.domain.model import Job
from florist_grpc.domain.resources import resources_violations
from florist_grpc.domain.tracking import tracking_violations

# Longest data path a client may name (Linux's PATH_MAX).
MAX_DATA_PATH = 4096
RELATIVE_LOCAL_PATH = (
    "must be an absolute path on the control plane's machine for a client without an agent "
    "(the CLI resolves a job file's relative paths against the file's directory)"
)

# What a schema keyword's violation says, without repeating the (possibly huge) value the caller sent.
_DESCRIPTIONS = {
    "type": "must be of type {}",
    "minimum": "is below the minimum {}",
    "maximum": "is above the maximum {}",
    "exclusiveMinimum": "must be greater than {} (exclusiveMinimum)",
    "exclusiveMaximum": "must be less than {} (exclusiveMaximum)",
}
# An agent's name (`florist-grpc agent --name`): what jobs and auth-file lines refer to it by.
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# A client's device: the first CUDA device if any ("auto"), the CPU, or a CUDA device.
DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]{1,3})?)$")


def agent_name_problem(name: str) -> str | None:
    """Why `name` cannot name an agent, or None."""
    if AGENT_NAME.match(name):
        return None
    return "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


@functools.cache
def _validator(strategy: str) -> Draft202012Validator:
    # The same schema object the catalog publishes: what users read is what we enforce.
    return Draft202012Validator(STRATEGIES[strategy].config_schema)


def _key(key: object) -> str:
    """A caller's key as a field path element, cut short."""
    text = str(key)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def _non_finite(value: Any, path: str) -> Iterator[str]:
    """Paths of NaN and infinite numbers (a JSON Schema `maximum` does not reject NaN: comparisons are false)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{_key(key)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{i}]")


@functools.lru_cache(maxsize=256)
def _model_validator(schema_json: str) -> Draft202012Validator:
    # Keyed by the schema's text: plugin schemas are plain dicts, and equal schemas share one validator.
    schema: JsonSchema = json.loads(schema_json)
    return Draft202012Validator(schema)


def _config_violations(validator: Draft202012Validator, config: Any, field: str) -> list[FieldViolation]:
    """Non-finite numbers first, then schema violations of the fields that are not already named."""
    non_finite = list(_non_finite(config, field))
    problems = [FieldViolation(path, "must be a finite number") for path in non_finite]
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.path)):
        problems.extend(v for v in _schema_violations(error, field) if v.field not in non_finite)
    return problems


def _schema_violations(error: ValidationError, field: str) -> list[FieldViolation]:
    path = field + "".join(f".{_key(p)}" for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [FieldViolation(f"{path}.{missing}" if missing else path, "is required")]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = set(schema.get("properties", {}))
        return [
            FieldViolation(f"{path}.{_key(key)}", f"unknown key; allowed keys are {sorted(known)}")
            for key in sorted(set(error.instance) - known)
        ]
    if isinstance(error.validator, str) and error.validator in _DESCRIPTIONS:
        return [FieldViolation(path, _DESCRIPTIONS[error.validator].format(error.validator_value))]
    return [FieldViolation(path, error.message[:200])]


def validate_job(job: Job, more: list[FieldViolation] | None = None, catalog: Catalog = DEFAULT_CATALOG) -> None:
    """Raise InvalidArgument listing every invalid field of `job`, together with `more` found by the caller
    (addresses are checked by the caller: their rules live in florist_grpc.net, above this package)."""
    problems: list[FieldViolation] = list(more or [])
    model = catalog.models.get(job.model)
    if model is None:
        problems.append(
            FieldViolation("job.model", f"unknown model {quote(job.model)}; one of {sorted(catalog.models)}")
        )
    else:
        validator = _model_validator(json.dumps(model.config_schema, sort_keys=True))
        problems += _config_violations(validator, job.model_config, "job.model_config")
    if job.optimizer not in catalog.optimizers:
        problems.append(
            FieldViolation(
                "job.optimizer", f"unknown optimizer {quote(job.optimizer)}; one of {sorted(catalog.optimizers)}"
            )
        )
    strategy = catalog.strategies.get(job.strategy)
    if strategy is None:
        problems.append(
            FieldViolation(
                "job.strategy", f"unknown strategy {quote(job.strategy)}; one of {sorted(catalog.strategies)}"
            )
        )
    else:
        if job.client_type not in strategy.client_types:
            problems.append(
                FieldViolation(
                    "job.client_type",
                    f"strategy {strategy.name} accepts client types {list(strategy.client_types)}, "
                    f"not {quote(job.client_type)}",
                )
            )
        problems += _config_violations(_validator(strategy.name), job.server_config, "job.server_config")
    if not job.clients:
        problems.append(FieldViolation("job.clients", "at least one client is required"))
    if len(job.clients) > MAX_CLIENTS:
        problems.append(FieldViolation("job.clients", f"at most {MAX_CLIENTS} clients"))
    for i, client in enumerate(job.clients):
        if not client.data_path.strip():
            problems.append(FieldViolation(f"job.clients[{i}].data_path", "must not be empty"))
        elif len(client.data_path) > MAX_DATA_PATH or "\0" in client.data_path:
            problems.append(FieldViolation(f"job.clients[{i}].data_path", f"at most {MAX_DATA_PATH} chars, no NUL"))
        elif not client.agent and not PurePosixPath(client.data_path).is_absolute():
            # Resolving it against serve's working directory would be a guess; an agent's client keeps its path
            # relative to that agent's --data-root, where the agent resolves it.
            problems.append(FieldViolation(f"job.clients[{i}].data_path", RELATIVE_LOCAL_PATH))
        if client.agent and (problem := agent_name_problem(client.agent)):
            problems.append(FieldViolation(f"job.clients[{i}].agent", problem))
        if not DEVICE.match(client.device):
            problems.append(FieldViolation(f"job.clients[{i}].device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"))
    problems += tracking_violations(job.tracking)
    problems += resources_violations(job.resources)
    if problems:
        raise InvalidArgument(problems, reason="INVALID_JOB")
