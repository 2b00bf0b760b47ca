"""A job across Slurm nodes that are network namespaces (florist_grpc/testing/slurm_netns.py): each FL process on a
node of its own, FL traffic between nodes and reports from them to the embedded Redis on --advertise-host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from florist_grpc.launcher_config import LauncherSettings
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.slurm_netns import NamespacedSlurmCluster, unavailable
from tests.helpers import job_message
from tests.slurm.test_slurm_training import _field, slurm_jobs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes() -> Iterator[NamespacedSlurmCluster]:
    if (why := unavailable()) is not None:
        pytest.skip(why)
    cluster = NamespacedSlurmCluster(nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def plane(
    nodes: NamespacedSlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ControlPlaneThread]:
    monkeypatch.setitem(os.environ, "SLURM_CONF", str(nodes.conf))  # this cluster's, not the one-node fixture's
    shared = tmp_path / "shared"
    shared.mkdir()
    running = ControlPlaneThread.in_dir(
        tmp_path / "florist",
        launcher=LauncherSettings("slurm", shared_dir=shared),
        advertise_host=nodes.controller_address,
        launcher_pool=False,
    )
    yield running
    running.stop()


def test_a_job_runs_with_each_fl_process_on_its_own_node(
    plane: ControlPlaneThread, nodes: NamespacedSlurmCluster, demo_data: list[str]
) -> None:
    job = plane.create(job_message(demo_data, rounds=2))
    plane.start(job.id)
    events = plane.events(job.id, timeout=180)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    done = plane.get(job.id)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    hosts = {name.rsplit("-", 1)[1]: _field(line, "BatchHost") for name, line in slurm_jobs(nodes, job.id).items()}
    assert sorted(hosts.values()) == ["n1", "n2", "n3"]  # one CPU per node: one FL process per node
    # The server advertised its node's own address (its route to the control plane), which its clients reached.
    server_node = int(hosts["server"][1:])
    assert done.server_address.rsplit(":", 1)[0] == nodes.node_address(server_node)
    # Every client's reports crossed the bridge to the embedded Redis on the advertise host.
    assert all(c.state == job_pb2.CLIENT_STATE_FINISHED and "rounds" in c.metrics for c in done.clients)
    assert nodes.squeue() == []
