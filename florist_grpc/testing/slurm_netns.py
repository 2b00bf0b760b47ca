"""A Slurm cluster whose nodes are network namespaces (tests/slurm/test_slurm_nodes.py), so that FL traffic and
reports cross a network: slurmctld (and the control plane beside it) on a bridge of the tests' own, one slurmd per
namespace, each with its own address, and one CPU each, so that each FL process lands on a node of its own.

Known to work (DESIGN.md, "Launchers"): `NodeName=nI NodeAddr=... NodeHostname=nI`, `%n` in the slurmd paths, the
munge socket shared through the filesystem, and slurmd started with `nsenter --net` (`ip netns exec` remounts
/sys and hides the cgroup tree: slurmd exits). Everything it adds (the bridge, the namespaces and their veths) is
named with a random tag and deleted by `stop`.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess

from florist_grpc.testing.slurm_cluster import SlurmCluster
from florist_grpc.testing.slurm_cluster import unavailable as one_node_unavailable


def unavailable() -> str | None:
    if (why := one_node_unavailable()) is not None:
        return why
    missing = [c for c in ("ip", "nsenter") if shutil.which(c) is None]
    return f"network namespaces need {', '.join(missing)}" if missing else None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class NamespacedSlurmCluster(SlurmCluster):
    def __init__(self, nodes: int = 3) -> None:
        super().__init__()
        self._count = nodes
        self._tag = secrets.token_hex(3)
        # An address range nobody uses here, one per cluster (a random third octet).
        self._subnet = f"10.213.{secrets.randbelow(250) + 1}"
        self.controller_address = f"{self._subnet}.1"
        self._bridge = f"flbr{self._tag}"
        self.namespaces = [f"florist-{self._tag}-n{i}" for i in range(1, nodes + 1)]

    @property
    def nodes(self) -> int:
        return self._count

    def node_address(self, i: int) -> str:
        """The address of node n<i> (1-based)."""
        return f"{self._subnet}.{10 + i}"

    def _prepare_network(self) -> None:
        _ip("link", "add", self._bridge, "type", "bridge")
        _ip("addr", "add", f"{self.controller_address}/24", "dev", self._bridge)
        _ip("link", "set", self._bridge, "up")
        for i, namespace in enumerate(self.namespaces, start=1):
            veth = f"fl{self._tag}v{i}"
            _ip("netns", "add", namespace)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", veth, "master", self._bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{self.node_address(i)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")

    def _node_lines(self) -> str:
        return "\n".join(
            f"NodeName=n{i} NodeAddr={self.node_address(i)} NodeHostname=n{i} CPUs=1 RealMemory=4000 State=UNKNOWN"
            for i in range(1, self._count + 1)
        )

    def _slurmds(self) -> list[tuple[str, list[str]]]:
        return [
            (
                f"slurmd-n{i}",
                ["nsenter", f"--net=/run/netns/{ns}", "/usr/sbin/slurmd", "-D", "-f", str(self.conf), "-N", f"n{i}"],
            )
            for i, ns in enumerate(self.namespaces, start=1)
        ]

    def _remove_network(self) -> None:
        for namespace in self.namespaces:  # its veth goes with it
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", namespace)
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", self._bridge)
