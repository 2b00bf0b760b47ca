"""The PSS sampler of bench/clients.py, in its own process: reading `smaps_rollup` of 100-200 processes every
0.5 s is real CPU, and inside the control plane's process it took 45 % of that process's samples (docs/benchmarks.md
§13), so the figures measured the measurement. Run as `python -m bench.pss_sampler PID`: samples PID's FL
descendants (and PID itself, the control plane) until its stdin closes, then prints the peaks as one JSON line.
"""

from __future__ import annotations

import json
import select
import sys

import psutil

FL_COMMANDS = ("florist_grpc.fl.server", "florist_grpc.fl.client", "florist_grpc.launch.pool_process")
INTERVAL = 0.5  # seconds between samples


def fl_processes(root: psutil.Process) -> list[psutil.Process]:
    """`root`'s FL processes (and its launcher pool), found among its descendants."""
    found = []
    for p in root.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if any(m in cmd for m in FL_COMMANDS):
            found.append(p)
    return found


def sample(pid: int) -> dict[str, int]:
    """Sample until stdin closes: the FL processes' summed PSS at its peak (the sum, the count, the largest, and
    their summed USS then: what they hold alone) and the peak PSS of `pid` itself."""
    root = psutil.Process(pid)
    peak = {"total": 0, "count": 0, "largest": 0, "plane": 0, "uss": 0}
    while True:
        sizes, private = [], []
        for p in fl_processes(root):
            try:
                memory = p.memory_full_info()
            except psutil.Error:
                continue
            sizes.append(memory.pss)
            private.append(memory.uss)
        if sum(sizes) > peak["total"]:
            peak.update(total=sum(sizes), count=len(sizes), largest=max(sizes), uss=sum(private))
        try:
            peak["plane"] = max(peak["plane"], root.memory_full_info().pss)
        except psutil.Error:
            break
        ready, _, _ = select.select([sys.stdin], [], [], INTERVAL)  # the interval, or the end of stdin: stop
        if ready and not sys.stdin.read(1):
            break
    return peak


if __name__ == "__main__":
    print(json.dumps(sample(int(sys.argv[1]))), flush=True)
