"""Files read again when they change: TLS certificates, keys and CAs, and the auth file, renewed without a restart.

A file counts as changed when its inode, size or modification time does (os.stat follows symlinks, so the
symlink swap of a Kubernetes secret volume counts too); `check` looks, at most as often as the caller polls, and
`check(force=True)` (SIGHUP) reads again whatever the look says. A file that no longer reads (half written, wrong
key, gone) keeps the previous content in use and logs one error, once per state of the files: the next change
is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Signature = tuple[tuple[int, int, int] | None, ...]


def signature(paths: Sequence[Path]) -> Signature:
    """What says a file changed: (inode, size, mtime in ns) of each, None for one that cannot be read."""
    found: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


class Reloadable(Generic[T]):
    """The content of `paths` as `load` reads it (raising ValueError or OSError, with a message for the operator,
    when it cannot); `on_change(old, new)` is called after each successful reload."""

    def __init__(self, what: str, paths: Sequence[Path], load: Callable[[], T]) -> None:
        self.what = what
        self._paths = tuple(paths)
        self._load = load
        self._seen = signature(self._paths)
        self.current: T = load()  # at start a broken file is the caller's error (the process does not start)
        self._refused: Signature | None = None  # the state of the files last refused: said once
        self.on_change: list[Callable[[T, T], None]] = []

    def check(self, force: bool = False) -> bool:
        """Read the files again if they changed (or `force`); whether the content in use changed."""
        now = signature(self._paths)
        if not force and now in (self._seen, self._refused):
            return False
        try:
            new = self._load()
        except (OSError, ValueError) as exc:
            self._refused = now
            log.error("%s: not reloaded, the previous one stays in use: %s", self.what, exc)
            return False
        old, self.current, self._seen, self._refused = self.current, new, now, None
        if new == old:
            return False
        log.info("%s reloaded", self.what)
        for listener in self.on_change:
            listener(old, new)
        return True


async def poll(reloadables: Sequence[Reloadable[Any]], seconds: float) -> None:
    """Check every file every `seconds`, until cancelled (on the event loop: the files are a few KiB)."""
    while True:
        await asyncio.sleep(seconds)
        for reloadable in reloadables:
            try:
                reloadable.check()
            except Exception:  # a listener's bug must not end the polling of every other file
                log.exception("%s: reloading failed", reloadable.what)
