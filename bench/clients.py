"""One job with many clients through the launcher pool (issue 23, item 3): wall time, StartTraining, the first
round, and where the memory is: the FL processes' summed PSS at its peak, split per process (the pool's forks
share torch's pages, so PSS, not RSS, is what each one costs), and the control plane's own PSS.

python -c "from bench import clients; clients.run_clients(100)"; BENCH_PROFILE=DIR adds a py-spy profile of the
control plane while the job runs (bench/profile.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.profile import sampled
from bench.stats import record
from bench.warm import PATIENT, plane, run_job
from florist_grpc.fl.make_data import write_synthetic


class PssPeak:
    """The FL processes' PSS at the sample where their sum peaked: the sum, the count, the largest; and the control
    plane's own peak PSS. Sampled by another process (bench/pss_sampler.py), so the sampling's CPU is not the
    control plane's."""

    def __init__(self) -> None:
        self.total = self.largest = self.count = 0
        self.plane = 0  # this process: the control plane (and the benchmark's client)
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PssPeak:
        command = [sys.executable, "-m", "bench.pss_sampler", str(os.getpid())]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        out, _ = self._process.communicate(timeout=60)  # closes its stdin: it stops and prints its peaks
        peak = json.loads(out)
        self.total, self.count, self.largest, self.plane = peak["total"], peak["count"], peak["largest"], peak["plane"]


def run_clients(clients: int, rounds: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        data = write_synthetic(Path(directory) / "data", clients)
        with plane(True, PATIENT) as running, PssPeak() as pss, sampled(f"clients-{clients}"):
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
