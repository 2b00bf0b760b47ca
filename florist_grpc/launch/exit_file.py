"""`<log>.exit`: the exit code of an FL process, written by whoever reaped it, read by whoever adopts it later.

A process that is not our child (forked by the launcher pool, or adopted after a restart) has an exit code only
its parent learns; the file carries it past a crash of the control plane. It names the pid, so a stale file from
an earlier process with the same log path is never taken for this one's.
"""

from __future__ import annotations

import contextlib
import json
import os


def exit_path(log_path: str) -> str:
    return log_path + ".exit"


def write_exit_code(log_path: str, pid: int, code: int) -> None:
    path = exit_path(log_path)
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": pid, "code": code}, f)
        os.replace(path + ".tmp", path)  # readers see the whole file or none


def read_exit_code(log_path: str, pid: int) -> int | None:
    """The exit code recorded for `pid`, or None if none was."""
    try:
        with open(exit_path(log_path)) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("pid") != pid or not isinstance(recorded.get("code"), int):
        return None
    code: int = recorded["code"]
    return code
