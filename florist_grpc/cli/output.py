"""How commands print: rich for people, JSON for programs, and a short report (never a traceback) for any error."""

from __future__ import annotations

import base64
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import grpc
import typer
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from rich.console import Console

from florist_grpc.cli.options import Output

# The one reading of a failed call's google.rpc.Status details, shared with every internal client.
from florist_grpc.rpc_errors import DOMAIN, status_details, status_of

P = ParamSpec("P")
R = TypeVar("R")

# Wide enough that ids and tables are never cut when stdout is a file or a pipe.
PIPE_WIDTH = 200
# Doubles up to 2**53 are exact integers: beyond that an integral double is not an integer anyone wrote.
EXACT_INTEGER = 2**53


class CliError(Exception):
    """A user error the command reports as one line (a bad file, a missing flag combination, ...); `code` is the
    exit code (2 for a usage error, as click gives a bad flag)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def console(stderr: bool = False) -> Console:
    """A console that prints text as given: names, descriptions and paths are never read as rich markup."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else PIPE_WIDTH, highlight=False, markup=False)


def plain_numbers(value: Any) -> Any:
    """`value` with integral doubles as integers: a protobuf Struct holds only doubles, so a `local_epochs: 40`
    someone wrote comes back as 40.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


def message_dict(message: Message) -> Any:
    """A message as JSON values, field names as in the .proto files, integral numbers as integers."""
    return plain_numbers(json_format.MessageToDict(message, preserving_proto_field_name=True))


def print_json(value: Message | dict[str, Any]) -> None:
    body = message_dict(value) if isinstance(value, Message) else plain_numbers(value)
    print(json.dumps(body), flush=True)


# --- failed calls ----------------------------------------------------------------------------------------------


def _detail_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        body: dict[str, Any] = message_dict(detail)
    except TypeError:  # a detail type this client does not know: its type and bytes still reach the user
        body = {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}
    return body


def _violation_texts(detail: any_pb2.Any) -> list[str]:
    """`field: description` of a BadRequest or PreconditionFailure, as the server also joins them in messages."""
    bad, failure = error_details_pb2.BadRequest(), error_details_pb2.PreconditionFailure()
    if detail.Unpack(bad):
        return [f"{v.field}: {v.description}" if v.field else v.description for v in bad.field_violations]
    if detail.Unpack(failure):
        return [f"{v.subject}: {v.description}" if v.subject else v.description for v in failure.violations]
    return []


def _error_info_line(info: error_details_pb2.ErrorInfo, code: grpc.StatusCode) -> list[str]:
    metadata = ", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
    if info.reason == code.name and info.domain == DOMAIN and not metadata:
        return []  # says nothing the code has not said
    where = "" if info.domain == DOMAIN else f" from {info.domain}"
    return [f"reason: {info.reason}{where}" + (f" ({metadata})" if metadata else "")]


def _resource_line(resource: error_details_pb2.ResourceInfo) -> list[str]:
    owner = f", owned by {resource.owner}" if resource.owner else ""
    about = f": {resource.description}" if resource.description else ""
    return [f"resource: {resource.resource_type} {resource.resource_name}{owner}{about}"]


def _detail_lines(detail: any_pb2.Any, code: grpc.StatusCode) -> list[str]:
    """One detail as the lines under `CODE: message`."""
    failure, info = error_details_pb2.PreconditionFailure(), error_details_pb2.ErrorInfo()
    resource = error_details_pb2.ResourceInfo()
    if detail.Unpack(failure):  # its type says which kind of precondition (e.g. TOS), when the server sets one
        kinds = [f" ({v.type})" if v.type else "" for v in failure.violations]
        return [text + kind for text, kind in zip(_violation_texts(detail), kinds, strict=True)]
    if texts := _violation_texts(detail):
        return texts
    if detail.Unpack(info):
        return _error_info_line(info, code)
    if detail.Unpack(resource):
        return _resource_line(resource)
    body = _detail_json(detail)  # RetryInfo, DebugInfo, Help, ...: shown as they came
    return [f"{str(body.pop('@type', '')).rsplit('/', 1)[-1]}: {json.dumps(body)}"]


def _message_beyond(message: str, texts: list[str]) -> str:
    """The part of `message` that the detail lines below it do not already say (the server joins violations
    into its message with `; `, possibly cut short with `...`)."""
    for text in texts:
        message = message.replace(text, "")
    pieces = [p.strip() for p in message.split(";")]
    cut = [p for p in pieces if p.endswith("...") and any(t.startswith(p[:-3]) for t in texts)]
    return "; ".join(p for p in pieces if p and p not in cut)


def describe_rpc_error(exc: grpc.RpcError, output: Output = Output.text, tls: bool = False) -> str:
    """What a user sees of a failed call (a synchronous stub's or a grpc.aio one's), every detail the server sent
    once.

    Text: `CODE: message`, then one indented line per field violation, precondition violation, ErrorInfo and
    ResourceInfo (and any other detail as JSON), then the notes code on the way added (`exc.add_note`). JSON: one
    object in the shape of Google's JSON errors (AIP-193), `{"error": {"code", "status", "message", "details"}}`,
    each detail as its google.rpc message, plus `"notes"`.
    """
    code, message = status_of(exc)
    details = status_details(exc)
    notes = list(getattr(exc, "__notes__", []))
    if output == Output.json:
        error = {"code": code.value[0], "status": code.name, "message": message}
        body = {"error": error | {"details": [_detail_json(d) for d in details]}} if details else {"error": error}
        return json.dumps(body | ({"notes": notes} if notes else {}))
    lines = [line for detail in details for line in _detail_lines(detail, code)]
    violations = [text for detail in details for text in _violation_texts(detail)]
    header = _message_beyond(message, violations) if violations else message
    header = header or f"{len(violations)} problem{'s' if len(violations) > 1 else ''} with the request"
    if code == grpc.StatusCode.UNAVAILABLE and not tls:
        lines.append("(is the control plane running there? if it serves TLS, pass --tls-ca)")
    return "\n".join([f"{code.name}: {header}", *(f"  {line}" for line in lines), *notes])


def fail(message: str, code: int = 1, output: Output = Output.text) -> typer.Exit:
    """Print `error: message` on stderr (with --output json: `{"error": {"message": ...}}`); the exit to raise."""
    line = json.dumps({"error": {"message": message}}) if output == Output.json else f"error: {message}"
    print(line, file=sys.stderr, flush=True)
    return typer.Exit(code)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn every user error into a report on stderr (see describe_rpc_error) and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        output = Output.json if kwargs.get("output") == Output.json else Output.text
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): click exits quietly, as Unix tools do
        except grpc.RpcError as exc:
            report = describe_rpc_error(exc, output, tls=kwargs.get("tls_ca") is not None)
            print(report if output == Output.json else f"error: {report}", file=sys.stderr, flush=True)
            raise typer.Exit(1) from None
        except CliError as exc:
            raise fail(str(exc), exc.code, output) from None
        except (OSError, ValueError) as exc:
            raise fail(str(exc), output=output) from None
        except KeyboardInterrupt as exc:
            # Ctrl-C ends the command, not what it started: the notes say what goes on and how to get back to it.
            notes = list(getattr(exc, "__notes__", []))
            if notes:
                print("\n" * sys.stderr.isatty() + "\n".join(notes), file=sys.stderr, flush=True)
            raise typer.Exit(130) from None

    return wrapper
