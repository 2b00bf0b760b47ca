"""Summaries of local data files, kept while a file stays the same.

A job that leaves the queue is checked again, and its files were probed when StartTraining queued it: probing
them again (a process reading every sample) is most of the time from a slot freeing to the next start. A file is
the same file while its identity and times are (device, inode, size, modification and change time, by stat): then
its summary is too. A file that changed, moved or went away is probed again (and refused if it is gone).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

Summary = dict[str, Any]
Signature = tuple[int, int, int, int, int]
File = tuple[str, str]  # (path, label column)
# Probes the files it is given, in order (florist_grpc/launch/probe.py's probe_files, bound to its timeout).
Probe = Callable[[list[File]], list[Summary]]


def signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ProbeCache:
    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._lock = threading.Lock()  # probes run in worker threads
        self._kept: OrderedDict[File, tuple[Signature, Summary]] = OrderedDict()

    def probe(self, files: list[File], probe: Probe) -> list[Summary]:
        """A summary per file, in order: kept ones for files unchanged since, a probe for the rest."""
        before = [signature(path) for path, _ in files]
        out: list[Summary | None] = [None] * len(files)
        with self._lock:
            for i, (file, seen) in enumerate(zip(files, before, strict=True)):
                kept = self._kept.get(file)
                if seen is not None and kept is not None and kept[0] == seen:
                    self._kept.move_to_end(file)
                    out[i] = kept[1]
        todo = [i for i, summary in enumerate(out) if summary is None]
        for i, summary in zip(todo, probe([files[i] for i in todo]), strict=True):
            out[i] = summary
            after = signature(files[i][0])
            if after is not None and after == before[i]:  # unchanged while it was read: the summary is its
                self._keep(files[i], after, summary)
        return [summary for summary in out if summary is not None]

    def _keep(self, file: File, seen: Signature, summary: Summary) -> None:
        with self._lock:
            self._kept[file] = (seen, summary)
            self._kept.move_to_end(file)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
