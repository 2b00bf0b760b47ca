"""`serve --launcher local|slurm` and the Slurm flags: where the control plane's FL processes run (config.py holds
the rest of serve's settings; launch/launcher.py the backends)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHERS = ("local", "slurm")
# sbatch options the Slurm launcher sets itself: a --slurm-sbatch-arg may not override them (the job's name is how
# supervision finds it, its output is the log StreamLogs reads, a requeue would restart an FL process silently).
RESERVED_SBATCH_OPTIONS = ("--job-name", "-J", "--output", "-o", "--error", "-e", "--requeue", "--wrap", "--parsable")
MAX_NAME = 200


def _name_problem(value: str) -> str | None:
    if len(value) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in value) or value.startswith("-"):
        return f"must be a Slurm name (at most {MAX_NAME} printable characters, no spaces, not starting with '-')"
    return None


@dataclass(frozen=True)
class LauncherSettings:
    """Where the FL server and agent-less clients run: this machine (`local`), or one Slurm job each (`slurm`)."""

    kind: str = "local"
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_sbatch_args: tuple[str, ...] = ()
    # Seen by every node: FL logs and models (jobs/<id>/) live here under Slurm.
    shared_dir: Path | None = None

    @property
    def slurm(self) -> bool:
        return self.kind == "slurm"

    @classmethod
    def build(
        cls,
        *,
        launcher: str = "local",
        slurm_partition: str = "",
        slurm_account: str = "",
        slurm_sbatch_args: Sequence[str] = (),
        shared_dir: Path | None = None,
        advertise_host: str = "",
        redis_url: str = "",
    ) -> LauncherSettings:
        """From serve's flags; ValueError naming the flag when a value is refused."""
        if launcher not in LAUNCHERS:
            raise ValueError(f"--launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
        if launcher != "slurm":
            for flag, given in (
                ("--slurm-partition", slurm_partition),
                ("--slurm-account", slurm_account),
                ("--slurm-sbatch-arg", slurm_sbatch_args),
                ("--shared-dir", shared_dir),
            ):
                if given:
                    raise ValueError(f"{flag} needs --launcher slurm")
            return cls()
        for flag, value in (("--slurm-partition", slurm_partition), ("--slurm-account", slurm_account)):
            if value and (problem := _name_problem(value)):
                raise ValueError(f"{flag} {value!r}: {problem}")
        for arg in slurm_sbatch_args:
            option = arg.split("=", 1)[0]
            if not arg.startswith("-") or any(not c.isprintable() for c in arg):
                raise ValueError(f"--slurm-sbatch-arg {arg!r}: must be one sbatch option such as --qos=high")
            if option in RESERVED_SBATCH_OPTIONS:
                raise ValueError(f"--slurm-sbatch-arg {arg!r}: {option} is set by the Slurm launcher itself")
        if shared_dir is None:
            raise ValueError("--launcher slurm needs --shared-dir (a directory every node sees: logs and models)")
        if not shared_dir.is_dir():
            raise ValueError(f"--shared-dir {shared_dir} is not a directory")
        if not advertise_host.strip() and not redis_url:
            raise ValueError(
                "--launcher slurm needs --advertise-host (the address FL processes on the cluster's nodes reach the "
                "embedded Redis at) or --redis-url"
            )
        for program in ("sbatch", "squeue", "scontrol", "scancel"):
            if shutil.which(program) is None:
                raise ValueError(f"--launcher slurm: {program} is not on PATH (install Slurm's client commands)")
        return cls("slurm", slurm_partition, slurm_account, tuple(slurm_sbatch_args), shared_dir.resolve())
