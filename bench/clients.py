"""One job with many clients through the launcher pool (issue 23, item 3): wall time, StartTraining, the first
round, and where the memory is: the FL processes' summed PSS at its peak, split per process (the pool's forks
share torch's pages, so PSS, not RSS, is what each one costs), and the control plane's own PSS.

python -c "from bench import clients; clients.run_clients(100)"; BENCH_PROFILE=DIR adds a py-spy profile of the
control plane while the job runs (bench/profile.py).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import psutil

from bench.profile import sampled
from bench.stats import record
from bench.warm import PATIENT, fl_processes, plane, run_job
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.testing.plane import ControlPlaneThread


class PssPeak:
    """The FL processes' PSS at the sample where their sum peaked: the sum, the count, the largest and the mean."""

    def __init__(self, running: ControlPlaneThread) -> None:
        self.total = self.largest = self.count = 0
        self.plane = 0  # this process: the control plane (and the benchmark's client)
        self._running = running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            sizes = []
            for p in fl_processes(self._running):
                try:
                    sizes.append(p.memory_full_info().pss)
                except psutil.Error:
                    continue
            if sum(sizes) > self.total:
                self.total, self.count, self.largest = sum(sizes), len(sizes), max(sizes)
            self.plane = max(self.plane, psutil.Process().memory_full_info().pss)
            self._stop.wait(0.5)  # a sampling interval, not a synchronisation

    def __enter__(self) -> PssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_clients(clients: int, rounds: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        data = write_synthetic(Path(directory) / "data", clients)
        with plane(True, PATIENT) as running, PssPeak(running) as pss, sampled(f"clients-{clients}"):
            result = run_job(running, data, rounds)
    line = {
        **result,
        "pss_gib": pss.total / 2**30,
        "processes": float(pss.count),
        "pss_mean_mib": pss.total / max(pss.count, 1) / 2**20,
        "pss_largest_mib": pss.largest / 2**20,
        "plane_pss_mib": pss.plane / 2**20,
        "loadavg_1m": os.getloadavg()[0],
    }
    record("clients", clients=clients, rounds=rounds, **line)
    return line
