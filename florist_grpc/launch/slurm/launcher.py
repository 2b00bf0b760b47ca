"""`serve --launcher slurm`: each FL process is one Slurm job (launch/launcher.py's interface).

The job runs `exec python -m florist_grpc.fl.<role>` with the run in its environment (sbatch exports the
submitter's environment; never on a command line), logs to the shared dir, and is followed by the one monitor
thread (monitor.py). The FL server says where it runs by writing a ready file in the shared dir (fl/readiness.py):
clients submitted with it wait for that file and connect to the host it names.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.model import Exit, ProcessRef
from florist_grpc.fl.readiness import ADVERTISE_TO_ENV, READY_FILE_ENV
from florist_grpc.fl.run_config import run_environment
from florist_grpc.launch import process
from florist_grpc.launch.handles import FL_MODULES, LocalProcess, ProcessHandle
from florist_grpc.launch.launcher import LaunchSpec
from florist_grpc.launch.slurm.commands import batch_script, job_name, parse_sbatch, sbatch_options
from florist_grpc.launch.slurm.monitor import COMMAND_TIMEOUT_SECONDS, SlurmMonitor
from florist_grpc.launcher_config import LauncherSettings
from florist_grpc.net import split_host_port

# How often a launch looks for the FL server's ready file (a file on a shared dir: no event reaches us).
READY_POLL_SECONDS = 0.05


class SlurmProcess:
    """An FL process run as a Slurm job; what it did comes from the monitor's last look at Slurm."""

    def __init__(self, ref: ProcessRef, monitor: SlurmMonitor, ready_file: Path | None = None) -> None:
        self.ref = ref
        self._monitor = monitor
        self._ready_file = ready_file
        monitor.watch(ref.slurm_job_id)

    @property
    def clients_after_ready(self) -> bool:
        # Its clients are submitted at once: Slurm places them and they import torch while it does the same,
        # then they wait for its ready file (host_file) and connect to the host it names.
        return False

    def poll(self) -> Exit | None:
        return self._monitor.exit_of(self.ref.slurm_job_id)

    def terminate(self) -> None:
        self._monitor.cancel(self.ref.slurm_job_id)

    def kill(self) -> None:
        self._monitor.cancel(self.ref.slurm_job_id, kill=True)

    def log_tail(self) -> str:
        return process.log_tail(self.ref.log_path)

    def wait_exit(self, timeout: float) -> Exit | None:
        return self._monitor.wait_exit(self.ref.slurm_job_id, timeout)

    async def wait_ready(self) -> bool:
        """True once it wrote its ready file; False if its Slurm job ended first (the caller bounds the wait)."""
        if self._ready_file is None:
            raise RuntimeError("readiness is only known for a process this launcher started")
        while True:
            if self._ready_file.exists():
                return True
            if self.poll() is not None:
                return self._ready_file.exists()
            await asyncio.sleep(READY_POLL_SECONDS)

    def host_file(self) -> str:
        return str(self._ready_file) if self._ready_file is not None else ""

    def advertised_host(self) -> str:
        if self._ready_file is None:
            return ""
        try:
            return self._ready_file.read_text().strip()
        except OSError:
            return ""


class SlurmLauncher:
    name = "slurm"
    fl_servers_here = False

    def __init__(self, settings: LauncherSettings, advertise_host: str, monitor: SlurmMonitor | None = None) -> None:
        self._settings = settings
        self._advertise_host = advertise_host  # FL servers write their route to it: the address clients use
        self._monitor = monitor or SlurmMonitor()

    @property
    def monitor(self) -> SlurmMonitor:
        return self._monitor

    def server_bind(self, server_address: str) -> str:
        return f"0.0.0.0:{split_host_port(server_address)[1]}"  # wherever Slurm places it

    async def launch(self, spec: LaunchSpec) -> SlurmProcess:
        return await asyncio.to_thread(self._submit, spec)

    def _submit(self, spec: LaunchSpec) -> SlurmProcess:
        workdir = spec.log_path.parent
        workdir.mkdir(parents=True, exist_ok=True)
        ready_file = workdir / f"{spec.source_key}.ready"
        ready_file.unlink(missing_ok=True)
        env = process.fl_environment(run_environment(spec.run_json))
        env[READY_FILE_ENV] = str(ready_file)
        env[ADVERTISE_TO_ENV] = self._advertise_host
        argv = sbatch_options(
            job_name(spec.job_id, spec.source_key),
            str(spec.log_path),
            spec.role,
            spec.resources,
            self._settings,
            str(workdir),
        )
        try:
            done = subprocess.run(
                argv,
                input=batch_script(sys.executable, FL_MODULES[spec.role]),
                capture_output=True,
                text=True,
                env=env,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FailedPrecondition(f"sbatch of the FL {spec.source_key} failed: {exc}", reason="SLURM") from exc
        if done.returncode != 0:
            raise FailedPrecondition(
                f"sbatch refused the FL {spec.source_key}: {done.stderr.strip()[:500]}", reason="SLURM_SBATCH"
            )
        job_id = parse_sbatch(done.stdout)
        ref = ProcessRef(log_path=str(spec.log_path), slurm_job_id=job_id)
        return SlurmProcess(ref, self._monitor, ready_file)

    def adopt(self, ref: ProcessRef) -> ProcessHandle:
        if ref.slurm_job_id:
            return SlurmProcess(ref, self._monitor)
        return LocalProcess(ref)  # launched here before serve was restarted with --launcher slurm

    def close(self) -> None:
        self._monitor.close()
