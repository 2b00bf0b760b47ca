"""The memory sampler of bench/clients.py and bench/warm.py (`PssPeak`), in its own process: reading `smaps_rollup`
of 100-200 processes every 0.5 s is real CPU, and inside the control plane's process it took 45 % of that process's
samples (docs/benchmarks.md §13), so the figures measured the measurement. Run as `python -m bench.pss_sampler PID`:
samples PID's FL descendants (and PID itself, the control plane) until its stdin closes, then prints the peaks as one
JSON line.

Two measures, since the first cannot see a 100-client job whole:
- PSS, per process (`smaps_rollup`). One pass over 100 forked FL processes takes 1-3 s on 2 cores at the load such a
  job makes (each read walks ~300 MiB of mappings, under the process's mmap lock): processes start and end during
  a pass, so its sum is of processes at different moments, and its peak can miss the moment they are all alive.
- The machine's anonymous memory and page tables (/proc/meminfo), every 20 ms: one read is instantaneous and
  whole. What the job added is its peak less the reading at the sampler's start, which PssPeak waits for
  before the job begins (bench/clients.py: the pool warm, before StartTraining). It counts every process on the
  machine, so it is measured on a machine doing nothing else.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading

import psutil

FL_COMMANDS = ("florist_grpc.fl.server", "florist_grpc.fl.client", "florist_grpc.launch.pool_process")
INTERVAL = 0.5  # seconds between PSS samples
MEMINFO_INTERVAL = 0.02  # seconds between readings of /proc/meminfo (~30 us each)


class PssPeak:
    """The FL processes' PSS at the sample where their sum peaked: the sum, the count, the largest; the control
    plane's own peak PSS; and the anonymous memory and page tables the machine gained at its peak. Sampled by
    another process (this module, run), so the sampling's CPU is not the control plane's."""

    def __init__(self) -> None:
        self.total = self.largest = self.count = self.uss = 0
        self.plane = 0  # this process: the control plane (and the benchmark's client)
        self.added = 0  # bytes of anonymous memory and page tables, at the peak, beyond the start's
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PssPeak:
        command = [sys.executable, "-m", "bench.pss_sampler", str(os.getpid())]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        # Its first meminfo reading is the baseline: the job must not start before it.
        assert self._process.stdout.readline().strip() == "ready", "the sampler did not start"
        return self

    def __exit__(self, failed: type[BaseException] | None, *exc: object) -> None:
        assert self._process is not None
        if failed is not None:  # the job's own error is the one to see, not a sampler cut short
            self._process.kill()
            self._process.wait()
            return
        out, _ = self._process.communicate(timeout=60)  # closes its stdin: it stops and prints its peaks
        peak = json.loads(out)
        self.total, self.count, self.largest, self.plane = peak["total"], peak["count"], peak["largest"], peak["plane"]
        self.uss, self.added = peak["uss"], peak["added"]


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


def anonymous_bytes() -> int:
    """The machine's anonymous memory and page tables now (/proc/meminfo)."""
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return sum(int(fields[name].split()[0]) for name in ("AnonPages", "PageTables")) * 1024


class AnonymousPeak(threading.Thread):
    """The highest `anonymous_bytes()` seen, read every MEMINFO_INTERVAL until `stop`."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_bytes = self.peak = anonymous_bytes()
        self.stop = threading.Event()
        self.failure: OSError | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(MEMINFO_INTERVAL):  # a sampling interval, not a synchronisation
                self.peak = max(self.peak, anonymous_bytes())
        except OSError as exc:  # reported by `sample`: a peak that stopped early would be too low, silently
            self.failure = exc


def sample(pid: int) -> dict[str, int]:
    """Sample until stdin closes: the FL processes' summed PSS at its peak (the sum, the count, the largest, and
    their summed USS then: what they hold alone), the peak PSS of `pid` itself, and the anonymous memory added."""
    root = psutil.Process(pid)
    peak = {"total": 0, "count": 0, "largest": 0, "plane": 0, "uss": 0}
    anonymous = AnonymousPeak()
    anonymous.start()
    print("ready", flush=True)
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
    anonymous.stop.set()
    anonymous.join()
    if anonymous.failure is not None:
        raise anonymous.failure
    return {**peak, "added": anonymous.peak - anonymous.start_bytes}


if __name__ == "__main__":
    print(json.dumps(sample(int(sys.argv[1]))), flush=True)
