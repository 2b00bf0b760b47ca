"""Where a forked client's private memory is (docs/benchmarks.md section 17): one client's private pages
(Private_Dirty + Private_Clean in /proc/PID/smaps), split into mappings the launcher pool already had before the
fork (anonymous, [heap], files) and mappings new in the client.

python -c "from bench import client_memory; client_memory.split(10)"
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

from bench.pss_sampler import fl_processes
from bench.stats import record
from bench.warm import PATIENT, job_message, plane
from florist_grpc.fl.make_data import write_synthetic
from florist_grpc.proto.florist.v1 import job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc


@dataclass
class Mapping:
    end: int
    name: str
    private_kib: int = 0


def mappings(pid: int) -> dict[int, Mapping]:
    """A process's mappings by start address, with their private KiB."""
    found: dict[int, Mapping] = {}
    current: Mapping | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and not parts[0].endswith(":"):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            current = found[start] = Mapping(end, parts[5] if len(parts) >= 6 else "[anon]")
        elif parts[0] in ("Private_Dirty:", "Private_Clean:") and current is not None:
            current.private_kib += int(parts[1])
    return found


def split(clients: int = 10, after_rounds: int = 5) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as directory:
        data = write_synthetic(Path(directory) / "data", clients)
        with plane(True, PATIENT) as running, grpc.insecure_channel(running.address) as channel:
            assert running.plane.launcher_pool is not None and running.plane.launcher_pool.pid is not None
            before = mappings(running.plane.launcher_pool.pid)
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            training = pb_grpc.TrainingServiceStub(channel)
            request = job_service_pb2.CreateJobRequest(job=job_message(data, 60))
            job = jobs.CreateJob(request, timeout=60).job
            training.StartTraining(pb.StartTrainingRequest(job_id=job.id), timeout=300)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                rounds = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id)).job.server_metrics.fields
                if "rounds" in rounds and len(rounds["rounds"].struct_value.fields) >= after_rounds:
                    break
                time.sleep(0.2)
            client = next(p for p in fl_processes(psutil.Process()) if "fl.client" in " ".join(p.cmdline()))
            shares: Counter[str] = Counter()
            for start, mapping in mappings(client.pid).items():
                inherited = start in before and before[start].end == mapping.end
                kind = "file" if not mapping.name.startswith("[") else mapping.name.strip("[]")
                shares[f"{'inherited' if inherited else 'new'}_{kind}_kib"] += mapping.private_kib
            training.StopTraining(pb.StopTrainingRequest(job_id=job.id), timeout=60)
    line = {k: v for k, v in shares.items() if v}
    record("client_memory", clients=clients, after_rounds=after_rounds, loadavg_1m=os.getloadavg()[0], **line)
    return line
