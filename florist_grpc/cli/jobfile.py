"""Job files (JSON or YAML): a CreateJobRequest body, or just its `job`. Errors name the file, line and field.

A relative `data_path` of a client launched by the control plane itself (no `agent`) is resolved against the job
file's directory, so a job file and its data can move together (examples/ relies on it). Paths of clients run by
an agent are the agent's business and are sent as written.

A job file may come from anyone, so it is bounded before it is parsed: at most MAX_FILE_BYTES are read, nesting
deeper than MAX_DEPTH is refused (JSON by a scan of its brackets, YAML from its event stream, before any tree is
built), and YAML aliases are refused outright: without them a document's size bounds its number of nodes, so no
"billion laughs". Each refusal, as every other problem of the file, is one line and exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from google.protobuf import json_format

from florist_grpc.cli.output import CliError
from florist_grpc.proto.florist.v1 import job_service_pb2

# A job is a small document: one with 1,000 clients is about 100 KiB. The worst YAML of this size (a flat list of
# 500,000 numbers) costs `job create` about 5 s and 240 MB, parsing and protobuf conversion included.
MAX_FILE_BYTES = 1 << 20
# The control plane decodes a request at most 100 protobuf levels deep, and each level of a Struct (server_config,
# model_config) costs two: 32 levels of a file always fit, and no job needs more than a handful.
MAX_DEPTH = 32
UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)" at "([^"]*)"')
# A JSON string (skipped whole, escapes included) or a bracket: enough to measure nesting without parsing.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# libyaml when PyYAML was built with it (about 8 times faster than the pure-Python parser), safe either way.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"
_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def refuse(message: str) -> NoReturn:
    """A job file that cannot be used (unreadable, beyond a bound, not a job): one line, exit 2, a usage error
    as a bad flag is."""
    raise CliError(message, 2)


def read_bounded(path: Path) -> str:
    """The file's text, never more than MAX_FILE_BYTES of it read (a 200 MB file, /dev/zero, a pipe that never
    ends are refused after that much)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        refuse(f"cannot read {path}: {exc.strerror}")
    if len(data) > MAX_FILE_BYTES:
        refuse(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; a job file is a small document")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        refuse(f"{path}: not UTF-8 text (byte {exc.start})")


def check_json_nesting(path: Path, text: str) -> None:
    depth = 0
    for token in _JSON_NESTING.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, token.start()) + 1
                refuse(f"{path}:{line}: nested deeper than {MAX_DEPTH} levels")
        elif bracket in "]}":
            depth -= 1


def _line(event: yaml.Event) -> str:
    return f":{event.start_mark.line + 1}" if event.start_mark is not None else ""


def check_yaml_events(path: Path, text: str) -> None:
    """Aliases and nesting, from the parser's events: no node is built yet, so nothing can expand."""
    depth = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            refuse(f"{path}{_line(event)}: YAML aliases (*name) are not allowed in a job file; write the value out")
        if isinstance(event, _OPENS):
            depth += 1
            if depth > MAX_DEPTH:
                refuse(f"{path}{_line(event)}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSES):
            depth -= 1


def parse_text(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            check_yaml_events(path, text)
            return yaml.load(text, Loader=_YAML_LOADER)  # a SafeLoader (libyaml's when there is one)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            if problem == _LIBYAML_TOO_DEEP:  # libyaml's own bound (1,000 levels), met before any event reaches us
                refuse(f"{path}{where}: nested deeper than {MAX_DEPTH} levels")
            refuse(f"{path}{where}: invalid YAML: {problem}")
        except ValueError as exc:  # a value no Python type holds (an integer of 5,000 digits)
            refuse(f"{path}: invalid YAML: {str(exc).splitlines()[0]}")
    check_json_nesting(path, text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        refuse(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
    except ValueError as exc:
        refuse(f"{path}: invalid JSON: {str(exc).splitlines()[0]}")


def resolve_data_paths(body: dict[str, Any], base: Path) -> None:
    clients = body.get("job", {}).get("clients")
    if not isinstance(clients, list):
        return  # not a list: ParseDict says so, naming the field
    for client in clients:
        if not isinstance(client, dict) or client.get("agent"):
            continue
        data_path = client.get("data_path")
        if isinstance(data_path, str) and data_path and not Path(data_path).is_absolute():
            client["data_path"] = str((base / data_path).resolve())


def load_request(path: Path) -> job_service_pb2.CreateJobRequest:
    """The CreateJobRequest a job file describes; one line and exit 2 for anything wrong with the file."""
    body = parse_text(path, read_bounded(path))
    if not isinstance(body, dict):
        refuse(f"{path}: expected an object (a job, or {{job: ..., request_id: ...}})")
    if "job" not in body:
        body = {"job": body}
    if not isinstance(body["job"], dict):
        refuse(f"{path}: job: expected an object")
    resolve_data_paths(body, path.parent)
    try:
        return json_format.ParseDict(body, job_service_pb2.CreateJobRequest())
    except json_format.ParseError as exc:
        found = UNKNOWN_FIELD.search(str(exc))
        if found:
            where = found.group(2).removeprefix("CreateJobRequest").lstrip(".") or "the top level"
            refuse(f'{path}: unknown field "{found.group(1)}" in {where}')
        refuse(f"{path}: {str(exc).splitlines()[0]}")
