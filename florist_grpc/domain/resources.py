"""What each FL process of a job may use (`Job.resources`): cpus, memory and time limit for every FL process, gpus
for the clients only (the server aggregates on CPU). 0 = no request. Under Slurm they become sbatch options
(launch/slurm/commands.py); the local launcher and agents apply cpus as torch threads and ignore the rest."""

from __future__ import annotations

from dataclasses import dataclass

from florist_grpc.domain.errors import FieldViolation

MAX_CPUS = 1024
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
MAX_GPUS = 64
MAX_TIME_LIMIT_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class Resources:
    cpus: int = 0
    memory_mib: int = 0
    gpus: int = 0
    # Whole seconds (a fraction rounds up); 0 = none (Slurm's partition default applies).
    time_limit_seconds: int = 0

    @property
    def requested(self) -> bool:
        return any((self.cpus, self.memory_mib, self.gpus, self.time_limit_seconds))


def resources_violations(resources: Resources, field_name: str = "job.resources") -> list[FieldViolation]:
    """Every problem of a job's resources, as field violations."""
    problems: list[FieldViolation] = []
    for name, value, bound in (
        ("cpus", resources.cpus, MAX_CPUS),
        ("memory_mib", resources.memory_mib, MAX_MEMORY_MIB),
        ("gpus", resources.gpus, MAX_GPUS),
    ):
        if not 0 <= value <= bound:
            problems.append(FieldViolation(f"{field_name}.{name}", f"must be 0..{bound}, not {value}"))
    seconds = resources.time_limit_seconds
    if seconds < 0:
        problems.append(FieldViolation(f"{field_name}.time_limit", "must not be negative"))
    elif seconds > MAX_TIME_LIMIT_SECONDS:
        problems.append(FieldViolation(f"{field_name}.time_limit", "must be at most 365 days"))
    return problems
