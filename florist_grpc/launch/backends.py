"""The launcher `serve --launcher` names (launch/launcher.py)."""

from __future__ import annotations

from florist_grpc.launch.launcher import Launcher, LocalLauncher
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.launch.slurm.launcher import SlurmLauncher
from florist_grpc.launcher_config import LauncherSettings


def make_launcher(settings: LauncherSettings, pool: LauncherPool | None, advertise_host: str) -> Launcher:
    """Slurm under `--launcher slurm` (FL servers advertise their route to `advertise_host`), else this machine."""
    if settings.slurm:
        return SlurmLauncher(settings, advertise_host)
    return LocalLauncher(pool)
