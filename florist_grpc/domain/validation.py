"""CreateJob validation: every problem of a job is found and reported at once, as field violations."""

from __future__ import annotations

import functools
import json

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from florist_grpc.domain.catalog import DEFAULT_CATALOG, STRATEGIES, Catalog, JsonSchema
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import Job

MAX_CLIENTS = 256


@functools.cache
def _validator(strategy: str) -> Draft202012Validator:
    # The same schema object the catalog publishes: what users read is what we enforce.
    return Draft202012Validator(STRATEGIES[strategy].config_schema)


@functools.lru_cache(maxsize=256)
def _model_validator(schema_json: str) -> Draft202012Validator:
    # Keyed by the schema's text: plugin schemas are plain dicts, and equal schemas share one validator.
    schema: JsonSchema = json.loads(schema_json)
    return Draft202012Validator(schema)


def _schema_violations(error: ValidationError, field: str = "job.server_config") -> list[FieldViolation]:
    path = field + "".join(f".{p}" for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [FieldViolation(f"{path}.{missing}" if missing else path, "is required")]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = set(schema.get("properties", {}))
        return [
            FieldViolation(f"{path}.{key}", f"unknown key; allowed keys are {sorted(known)}")
            for key in sorted(set(error.instance) - known)
        ]
    return [FieldViolation(path, error.message)]


def validate_job(job: Job, more: list[FieldViolation] | None = None, catalog: Catalog = DEFAULT_CATALOG) -> None:
    """Raise InvalidArgument listing every invalid field of `job`, together with `more` found by the caller
    (addresses are checked by the caller: their rules live in florist_grpc.net, above this package)."""
    problems: list[FieldViolation] = list(more or [])
    model = catalog.models.get(job.model)
    if model is None:
        problems.append(FieldViolation("job.model", f"unknown model {job.model!r}; one of {sorted(catalog.models)}"))
    else:
        validator = _model_validator(json.dumps(model.config_schema, sort_keys=True))
        for error in sorted(validator.iter_errors(job.model_config), key=lambda e: list(e.path)):
            problems.extend(_schema_violations(error, "job.model_config"))
    if job.optimizer not in catalog.optimizers:
        problems.append(
            FieldViolation("job.optimizer", f"unknown optimizer {job.optimizer!r}; one of {sorted(catalog.optimizers)}")
        )
    strategy = catalog.strategies.get(job.strategy)
    if strategy is None:
        problems.append(
            FieldViolation("job.strategy", f"unknown strategy {job.strategy!r}; one of {sorted(catalog.strategies)}")
        )
    else:
        if job.client_type not in strategy.client_types:
            problems.append(
                FieldViolation(
                    "job.client_type",
                    f"strategy {strategy.name} accepts client types {list(strategy.client_types)}, "
                    f"not {job.client_type!r}",
                )
            )
        errors = sorted(_validator(strategy.name).iter_errors(job.server_config), key=lambda e: list(e.path))
        for error in errors:
            problems.extend(_schema_violations(error))
    if not job.clients:
        problems.append(FieldViolation("job.clients", "at least one client is required"))
    if len(job.clients) > MAX_CLIENTS:
        problems.append(FieldViolation("job.clients", f"at most {MAX_CLIENTS} clients"))
    for i, client in enumerate(job.clients):
        if not client.data_path.strip():
            problems.append(FieldViolation(f"job.clients[{i}].data_path", "must not be empty"))
    if problems:
        raise InvalidArgument(problems)
