"""Process-wide logging for `serve` and `agent`: text for people, or one JSON object per line for collectors.

With `json`, every line either process writes is one JSON object: log records on stderr, the ready lines on stdout
(`florist-grpc listening on HOST:PORT`, `florist-grpc agent NAME connected to HOST:PORT`, exactly that text in
`message`), uncaught exceptions and warnings as records, and whatever else reaches stderr (cli/stray_stderr.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from florist_grpc.cli.stray_stderr import StrayStderr

# LogRecord attributes that are not extra fields a caller passed (`log.info(..., extra={...})`).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The lines programs wait for, on stdout (florist_grpc/agent/session.py logs its own under this name).
READY_LOGGER = "florist_grpc.ready"
_stray: StrayStderr | None = None


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str = "text", level: str | None = None) -> None:
    """Replace the root logger's handlers with one on stderr in `log_format` (text or json); ready lines go to
    stdout in the same format."""
    global _stray
    as_json = log_format == "json"
    if as_json and _stray is None:
        _stray = StrayStderr()
    stream = _stray.real if as_json and _stray is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("FLORIST_LOG_LEVEL", "INFO"))

    ready = logging.getLogger(READY_LOGGER)
    ready_handler = logging.StreamHandler(sys.stdout)
    ready_handler.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(message)s"))
    for old in list(ready.handlers):
        ready.removeHandler(old)
    ready.addHandler(ready_handler)
    ready.propagate = False  # stdout only, and whatever the log level: programs wait for these lines
    ready.setLevel(logging.INFO)

    logging.captureWarnings(True)  # warnings.warn() as records of logger py.warnings, not bare stderr text
    if as_json:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def announce(line: str, **fields: Any) -> None:
    """Print the line a supervisor or a test waits for on stdout: as it is, or as a JSON object whose `message` is
    exactly `line` (with `fields` beside it)."""
    logging.getLogger(READY_LOGGER).info("%s", line, extra=fields)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("florist_grpc").critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger("florist_grpc").error("uncaught %s in thread %s", args.exc_type.__name__, name, exc_info=exc_info)
