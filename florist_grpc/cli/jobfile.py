"""Job files (JSON or YAML): a CreateJobRequest body, or just its `job`. Errors name the file, line and field.

A relative `data_path` of a client launched by the control plane itself (no `agent`) is resolved against the job
file's directory, so a job file and its data can move together (examples/ relies on it). Paths of clients run by
an agent are the agent's business and are sent as written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from florist_grpc.cli.output import CliError
from florist_grpc.proto.florist.v1 import job_service_pb2

UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)" at "([^"]*)"')


def parse_text(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CliError(f"{path}{where}: invalid YAML: {problem}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def resolve_data_paths(body: dict[str, Any], base: Path) -> None:
    for client in body.get("job", {}).get("clients", []) or []:
        if not isinstance(client, dict) or client.get("agent"):
            continue
        data_path = client.get("data_path")
        if isinstance(data_path, str) and data_path and not Path(data_path).is_absolute():
            client["data_path"] = str((base / data_path).resolve())


def load_request(path: Path) -> job_service_pb2.CreateJobRequest:
    """The CreateJobRequest a job file describes; CliError (one line) for anything wrong with the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    body = parse_text(path, text)
    if not isinstance(body, dict):
        raise CliError(f"{path}: expected an object (a job, or {{job: ..., request_id: ...}})")
    if "job" not in body:
        body = {"job": body}
    if not isinstance(body["job"], dict):
        raise CliError(f"{path}: job: expected an object")
    resolve_data_paths(body, path.parent)
    try:
        return json_format.ParseDict(body, job_service_pb2.CreateJobRequest())
    except json_format.ParseError as exc:
        found = UNKNOWN_FIELD.search(str(exc))
        if found:
            where = found.group(2).removeprefix("CreateJobRequest").lstrip(".") or "the top level"
            raise CliError(f'{path}: unknown field "{found.group(1)}" in {where}') from None
        raise CliError(f"{path}: {str(exc).splitlines()[0]}") from None
