"""A Slurm cluster of the tests' own (florist_grpc/testing/slurm_cluster.py), started once for this directory's
tests and torn down after them; without root or the packages, every test here skips saying why."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from florist_grpc.testing.slurm_cluster import SlurmCluster, unavailable


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    if (why := unavailable()) is not None:
        pytest.skip(why)
    cluster = SlurmCluster()
    cluster.start()
    previous = os.environ.get("SLURM_CONF")
    # The control plane (in-process or `serve`) runs sbatch, scontrol and scancel against this cluster.
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()
