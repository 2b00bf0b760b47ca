"""A client's data file judged by its metadata only: where it really is (symlinks resolved) and what kind of file
it is. Nothing here reads a file's content (a named pipe cannot block a check, and no byte of a file can reach a
message); fl/data.py reads the content of what passes, and fl/probe.py summarises it.

Used on both sides: the control plane checks its own clients' paths before it probes them (with `serve
--data-root`, only files under one of those directories), and the reader refuses the same kinds again when it
opens the file, in case it changed in between.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

# What a path can be besides a regular file, as a user would name it.
NOT_REGULAR = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def kind_problem(path: str, mode: int) -> str | None:
    """Why a file of this `st_mode` cannot be a data file (anything but a regular file), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = NOT_REGULAR.get(stat.S_IFMT(mode), "of an unknown kind")
    return f"data file {path} is {kind}, not a regular file"


def os_problem(path: str, exc: OSError) -> str:
    """What a failed stat or open says about the file, in the system's words (never the file's content)."""
    if isinstance(exc, FileNotFoundError):
        return f"data file {path} does not exist"
    if isinstance(exc, PermissionError):
        return f"data file {path} is not readable here (permission denied)"
    if isinstance(exc, NotADirectoryError):
        return f"data file {path} does not exist (a part of its path is not a directory)"
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return f"data file {path} cannot be opened: {reason}"


def under_roots(real: Path, roots: Sequence[Path]) -> bool:
    """Whether a resolved path lies inside one of the (resolved) roots; no roots = anywhere."""
    return not roots or any(real.is_relative_to(root) for root in roots)


def file_problem(path: str, roots: Sequence[Path] = ()) -> str | None:
    """Why `path` cannot be a client's data file on this machine, or None when it is a regular file that lies
    (symlinks resolved) under one of `roots` (resolved directories; none = anywhere).

    A path outside the roots is refused before it is looked at, so the answer says nothing of what lies there.
    """
    return checked_file(path, roots)[1]


def checked_file(path: str, roots: Sequence[Path] = ()) -> tuple[str, str | None]:
    """Where `path` really is (symlinks resolved; `path` itself when it does not resolve) and why it cannot be a
    data file (see `file_problem`), or None. The resolved path is the one to open: a symlink swapped after the
    check then changes nothing."""
    if not Path(path).is_absolute():
        return path, f"data file {path} is not an absolute path"
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError up to Python 3.12, OSError from 3.13)
        return path, f"data file {path}: its symlinks do not resolve to a file (a loop)"
    if not under_roots(real, roots):
        return path, f"data file {path} is not under any --data-root of the control plane (symlinks resolved)"
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        return path, os_problem(path, exc)
    return str(real), kind_problem(path, mode)
