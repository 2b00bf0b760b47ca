"""How commands print: rich for people, JSON for programs, and one line (never a traceback) for any error."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.rpc_errors import from_rpc_error

P = ParamSpec("P")
R = TypeVar("R")

# Wide enough that ids and tables are never cut when stdout is a file or a pipe.
PIPE_WIDTH = 200


class CliError(Exception):
    """A user error the command reports as one line (a bad file, a missing flag combination, ...)."""


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else PIPE_WIDTH, highlight=False)


def message_json(message: Message) -> str:
    """One line of JSON, field names as in the .proto files."""
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))


def print_json(value: Message | dict[str, Any]) -> None:
    print(message_json(value) if isinstance(value, Message) else json.dumps(value), flush=True)


def describe_rpc_error(exc: grpc.RpcError, tls: bool = False) -> str:
    """`CODE: message`, then one line per field violation."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    lines = [f"{code.name}: {details}"]
    error = from_rpc_error(exc)
    if isinstance(error, InvalidArgument):
        lines += [f"  {v.field}: {v.description}" for v in error.violations if v.field]
    if code == grpc.StatusCode.UNAVAILABLE and not tls:
        lines.append("  (is the control plane running there? if it serves TLS, pass --tls-ca)")
    return "\n".join(lines)


def fail(message: str, code: int = 1) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn every user error into `error: ...` on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise fail(describe_rpc_error(exc, tls=kwargs.get("tls_ca") is not None)) from None
        except (CliError, OSError, ValueError) as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper
