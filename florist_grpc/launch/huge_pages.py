"""Moving the launcher pool's heap onto transparent huge pages, so that forking it is cheap.

A fork copies the parent's page tables: one entry per 4 KiB page of private memory. The pool holds ~290 MiB of
Python heap (torch, Flower and their imports), ~75k entries, and a fork cost it ~6 ms of CPU on a quiet machine
(~10 ms while a job's clients start beside it), one fork after another for a job's processes. On 2 MiB pages the
same heap is ~150 entries, and a child's exit unmaps as few. A child still copies only the 4 KiB it writes: since
Linux 5.8 a write to a shared huge page splits the mapping and copies that one page (docs/benchmarks.md section 19).

MADV_COLLAPSE (Linux 6.1) copies a range into a huge page on the spot. It takes a few ms per 2 MiB, so the pool
does it in short steps while it is idle (no child, no launch for a while): a launch waits one step (and the range
in hand) at most, and no child is alive to keep the small pages' copies. MADV_COLLAPSE ignores the system's
transparent-huge-page setting, so the pool reads it itself: "never" means never. A kernel without it refuses
every range (EINVAL), and the pool forks as before.
"""

from __future__ import annotations

import ctypes
import errno
import math
import mmap
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

MADV_COLLAPSE = 25  # <linux/mman.h>
SMALL_PAGE = mmap.PAGESIZE
THP_SETTINGS = Path("/sys/kernel/mm/transparent_hugepage")
# A range is collapsed only if this share of its pages is already in memory: a huge page is always whole, so a
# sparse range would grow by its holes.
MIN_RESIDENT = 0.9
# One step collapses ranges for at most this long: a launch that arrives meanwhile waits no longer.
STEP_SECONDS = 0.02


def idle_seconds(setting: str) -> float:
    """FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS as a number of seconds; negative (never) for "never", "inf", a
    negative number or anything unreadable (an optimisation is not worth failing the pool's start for)."""
    try:
        seconds = float(setting)
    except ValueError:
        return -1.0
    return seconds if math.isfinite(seconds) else -1.0


def huge_page_size(settings: Path = THP_SETTINGS) -> tuple[int, str]:
    """The size of a transparent huge page, or 0 and why the pool should not ask for any."""
    try:
        if "[never]" in (settings / "enabled").read_text():
            return 0, "transparent huge pages are set to never"
        return int((settings / "hpage_pmd_size").read_text()), ""
    except (OSError, ValueError) as exc:
        return 0, f"no transparent huge pages here ({exc})"


def heap_ranges(maps: str, size: int) -> list[int]:
    """The start of every `size`-aligned range inside the private, anonymous, writable mappings listed in `maps`
    (/proc/PID/maps text): the brk heap and the unnamed mappings where Python's allocator keeps its arenas."""
    starts: list[int] = []
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        low, high = (int(bound, 16) for bound in fields[0].split("-"))
        first = -(-low // size) * size
        starts.extend(range(first, high - size + 1, size))
    return starts


class _Libc:
    def __init__(self, size: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._size = size
        self._madvise = libc.madvise
        self._madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self._mincore = libc.mincore
        self._mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        self._vector = (ctypes.c_ubyte * (size // SMALL_PAGE))()

    def resident_share(self, start: int) -> float:
        if self._mincore(start, self._size, self._vector) != 0:
            return 0.0  # no longer mapped
        return sum(byte & 1 for byte in self._vector) / len(self._vector)

    def collapse(self, start: int) -> int:
        """0, or the errno the kernel refused it with."""
        return 0 if self._madvise(start, self._size, MADV_COLLAPSE) == 0 else ctypes.get_errno()


class HeapCollapse:
    """Moves this process's heap to huge pages each time it has been idle for `idle_seconds` (negative: never).
    Each idle time gets one pass: the pool's own writes while it forks split some huge pages back into small ones,
    and the next pass mends them (a range still huge costs one call). Not thread-safe: the pool's loop calls `busy`
    on every launch and every child it reaps (a pass stops there: no child keeps the small pages' copies alive),
    `wait` for how long it may block, and `step` when it woke with nothing to do."""

    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._libc: _Libc | None = None
        self._size = 0
        self._unusable = "" if sys.platform.startswith("linux") else "not Linux"
        self.collapsed = self.sparse = 0  # ranges, in the last pass
        self.refused: Counter[int] = Counter()  # ranges, by the errno the kernel gave
        self.busy()

    def busy(self) -> None:
        self._idle_since = self._clock()
        self._left: list[int] | None = None  # the ranges this idle time's pass has yet to do; None: not begun
        self._resting = self._idle_seconds < 0 or bool(self._unusable)  # no pass is due until the next idle time

    def wait(self) -> float | None:
        """How long the caller may block before the next step is due (None: no step will be)."""
        if self._resting:
            return None
        return max(0.0, self._idle_since + self._idle_seconds - self._clock())

    def step(self) -> bool:
        """Collapse ranges for up to STEP_SECONDS if the process has been idle long enough; True when this step
        ended a pass, or no pass can run here (`summary` says which)."""
        if self._unusable:
            return True
        if self._resting or self._clock() < self._idle_since + self._idle_seconds:
            return False
        if self._left is None:
            self._size, self._unusable = huge_page_size()  # read at each pass: an operator may set "never"
            if not self._unusable:
                try:
                    self._libc = self._libc or _Libc(self._size)
                    self._left = heap_ranges(Path("/proc/self/maps").read_text(), self._size)
                except (OSError, AttributeError) as exc:  # no /proc, or a libc without madvise or mincore
                    self._unusable = str(exc)
            if self._unusable:
                self._resting = True
                return True
            self.collapsed = self.sparse = 0
            self.refused.clear()
        assert self._libc is not None and self._left is not None
        deadline = self._clock() + STEP_SECONDS
        # A refusal is cheap (the kernel checks the advice first), so a kernel that cannot is simply asked for each.
        while self._left and self._clock() < deadline:
            start = self._left.pop()
            if self._libc.resident_share(start) < MIN_RESIDENT:
                self.sparse += 1
            elif refusal := self._libc.collapse(start):
                self.refused[refusal] += 1
            else:
                self.collapsed += 1
        self._resting = not self._left
        return self._resting

    def summary(self) -> str:
        if self._unusable:
            return f"heap left on small pages: {self._unusable}"
        mib = self._size >> 20
        refused = ", ".join(f"{errno.errorcode.get(e, e)} {n * mib} MiB" for e, n in sorted(self.refused.items()))
        return (
            f"heap on huge pages: {self.collapsed * mib} MiB; left on small pages: {self.sparse * mib} MiB sparse,"
            f" refused by the kernel: {refused or 'none'}"
        )
