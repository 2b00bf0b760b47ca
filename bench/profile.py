"""Where a benchmark's time goes: py-spy samples this process (every thread) while a measured section runs, and
the top entries per thread are kept beside its figures (docs/benchmarks.md).

Set BENCH_PROFILE=DIR to profile: `sampled(name)` then writes DIR/name.txt (py-spy's raw stacks) and records a
`profile` line with the top entries. Without it, `sampled` does nothing, so figures are measured unprofiled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.stats import record

RATE = 250  # samples a second: enough over a 2 s section, little enough not to take a core from the plane
_THREAD = re.compile(r"thread \(\d+\)(?:: (.*))?")
_RUN = re.compile(r"_\d+$")
# Leaf frames where a thread waits (py-spy without --idle still samples some of them): left out of every share.
_WAITING = ("Condition.wait", "EpollSelector.select", "_read_from_socket", "Thread.run", "_worker", "queue.get")


@contextmanager
def sampled(name: str, top: int = 8) -> Iterator[None]:
    """Profile this process while the block runs, if BENCH_PROFILE names a directory."""
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        yield
        return
    out = Path(directory) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(os.getpid()), "--threads", "--nonblocking", "-f", "raw"]
    process = subprocess.Popen([*command, "-r", str(RATE), "-o", str(out)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches asynchronously; a short head start, not synchronisation of results
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    for line in summarise(out.read_text(), top):
        record("profile", section=name, **line)


def summarise(raw: str, top: int) -> list[dict[str, object]]:
    """The `top` functions by samples with them on the stack (inclusive) and by their own samples, per thread
    group, from py-spy's raw output (`thread (tid): name;frame;...;frame count` lines), as shares of the samples
    where a thread was not waiting."""
    threads: Counter[str] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    within: Counter[tuple[str, str]] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        match = _THREAD.fullmatch(frames[0])
        group = _RUN.sub("", (match.group(1) if match else None) or "main")
        n = int(count)
        if any(w in frames[-1] for w in _WAITING):
            continue
        threads[group] += n
        if len(frames) > 1:
            own[(group, frames[-1])] += n
            for frame in set(frames[1:]):
                if "florist_grpc" in frame:
                    within[(group, frame)] += n
    total = sum(threads.values()) or 1
    out: list[dict[str, object]] = [
        {"thread": group, "share": round(n / total, 3)} for group, n in threads.most_common()
    ]
    for kind, counter in (("self", own), ("inclusive", within)):
        for (group, frame), n in counter.most_common(top):
            out.append({"thread": group, kind: frame, "share": round(n / total, 3)})
    return out
