"""What the Slurm launcher asks of Slurm and what Slurm's answers mean: pure functions, tested without a cluster
(tests/launch/test_slurm_commands.py).

A process's state and exit code are read with `scontrol show job -o` (one line per job; without accounting `sacct`
is unavailable), for every job in one call; a record is purged MinJobAge after its end, so the caller keeps the
last state it saw.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from florist_grpc.domain.model import Exit
from florist_grpc.domain.resources import Resources
from florist_grpc.launcher_config import LauncherSettings

# States in which the job's process may still run (or is about to, or is being ended): not an exit yet. A job
# COMPLETING still has processes being ended on its node: it counts as running, so a job's end leaves nothing.
RUNNING_STATES = frozenset(
    {
        "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
        "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
    }
)  # fmt: skip
# How a job that Slurm ended (not its process by itself) reads in a job's error, and the signal it counts as.
ENDED_BY_SLURM = {
    "CANCELLED": ("was cancelled in Slurm", signal.SIGTERM),
    "TIMEOUT": ("ran past its Slurm time limit", signal.SIGTERM),
    "NODE_FAIL": ("was lost with its Slurm node", signal.SIGKILL),
    "BOOT_FAIL": ("could not start: its Slurm node failed to boot", signal.SIGKILL),
    "OUT_OF_MEMORY": ("ran out of memory (Slurm OUT_OF_MEMORY)", signal.SIGKILL),
    "PREEMPTED": ("was preempted by Slurm", signal.SIGTERM),
    "DEADLINE": ("missed its Slurm deadline", signal.SIGTERM),
}


@dataclass(frozen=True)
class SlurmJob:
    """One line of `scontrol show job -o`, the fields we use."""

    job_id: str
    name: str
    state: str  # JobState, e.g. RUNNING, FAILED
    exit_code: str = "0:0"  # ExitCode, "code:signal"
    reason: str = "None"
    batch_host: str = ""


def job_name(job_id: str, source_key: str) -> str:
    """`florist-<job id>-server`, `florist-<job id>-client<i>`: how an operator (and squeue) tells them apart."""
    return f"florist-{job_id}-{source_key}"


def time_option(seconds: int) -> str:
    """sbatch --time in days-hours:minutes:seconds (Slurm rounds up to whole minutes)."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def sbatch_options(
    name: str, log_path: str, role: str, resources: Resources, settings: LauncherSettings, workdir: str
) -> list[str]:
    """The sbatch command line for one FL process (its script comes on stdin). cpus, memory and the time limit
    apply to every FL process, gpus to clients only (the server aggregates on CPU); --no-requeue, so a dead node
    ends the process NODE_FAIL instead of restarting it silently."""
    options = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--output={log_path}",
        "--open-mode=append",
        "--no-requeue",
        "--ntasks=1",
        f"--chdir={workdir}",
    ]
    if settings.slurm_partition:
        options.append(f"--partition={settings.slurm_partition}")
    if settings.slurm_account:
        options.append(f"--account={settings.slurm_account}")
    if resources.cpus:
        options.append(f"--cpus-per-task={resources.cpus}")
    if resources.memory_mib:
        options.append(f"--mem={resources.memory_mib}M")
    if resources.gpus and role == "client":
        options.append(f"--gres=gpu:{resources.gpus}")
    if resources.time_limit_seconds:
        options.append(f"--time={time_option(resources.time_limit_seconds)}")
    options.extend(settings.slurm_sbatch_args)
    return options


def batch_script(python: str, module: str) -> str:
    """The job's script: `exec`, so scancel's signal reaches the Python process itself (a shell in between would
    die and leave it running, re-parented to init, while Slurm says CANCELLED)."""
    return f"#!/bin/sh\nexec {shlex.quote(python)} -m {shlex.quote(module)}\n"


def parse_sbatch(stdout: str) -> str:
    """The job id `sbatch --parsable` printed ("ID" or "ID;CLUSTER")."""
    job_id = stdout.strip().splitlines()[-1].split(";")[0] if stdout.strip() else ""
    if not job_id.isdigit():
        raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return job_id


def parse_jobs(stdout: str) -> dict[str, SlurmJob]:
    """`scontrol show job -o` (one line per job, KEY=VALUE words) by job id. "No jobs in the system" is none."""
    jobs: dict[str, SlurmJob] = {}
    for line in stdout.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if "JobId" not in fields:
            continue
        jobs[fields["JobId"]] = SlurmJob(
            fields["JobId"],
            fields.get("JobName", ""),
            fields.get("JobState", ""),
            fields.get("ExitCode", "0:0"),
            fields.get("Reason", "None"),
            fields.get("BatchHost", ""),
        )
    return jobs


def exit_of(job: SlurmJob) -> Exit | None:
    """How the process of a Slurm job ended, or None while it may run. Slurm's state and reason name why."""
    if job.state in RUNNING_STATES:
        return None
    code_text, _, signal_text = job.exit_code.partition(":")
    code = int(code_text) if code_text.isdigit() else 0
    signum = int(signal_text) if signal_text.isdigit() else 0
    why = f"Slurm job {job.job_id} {job.state}" + (f", reason {job.reason}" if job.reason not in ("", "None") else "")
    if job.state == "COMPLETED":
        return Exit(0)
    if job.state == "FAILED":
        if signum:
            return Exit(-signum, f"was killed by signal {signum} ({why})")
        return Exit(code or 1, f"exited with code {code} ({why}, exit code {job.exit_code})")
    described, counts_as = ENDED_BY_SLURM.get(job.state, (f"ended {job.state} in Slurm", signal.SIGKILL))
    return Exit(-int(counts_as), f"{described} ({why})")


def scancel_command(job_ids: Sequence[str], kill: bool = False) -> list[str]:
    """scancel of these jobs (SIGTERM, then SIGKILL after Slurm's KillWait); `kill`: SIGKILL to the batch process
    (our FL process: its script exec'd it) now."""
    return ["scancel", *(["--full", "--signal=KILL"] if kill else []), *job_ids]
