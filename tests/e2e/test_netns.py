"""Multi-host: a control plane and two sites, each in its own network namespace, joined by a bridge.

The control plane serves TLS with an auth file; each site runs `florist-grpc agent` over TLS with its own agent
token and opens no port but its loopback Redis and its clients' tunnel listeners. Firewalls (nftables rules the
test sets) leave one way through: the control plane's namespace accepts connections on its gRPC port only, and
each site may reach nothing but that port (issue 22: FL traffic rides the agent's connection). A 2-site job trains
to success; refusals happen before anything runs. Everything network-facing lives in namespaces this test creates
and deletes (root needed for `ip netns`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from florist_grpc.testing.certificates import Pki, issue_pki
from tests.e2e.conftest import BIN
from tests.e2e.sites import AgentProcess, agent_command, sha, start_agent

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.200.0"  # inside the test's own namespaces only
CONTROL_PLANE_IP = f"{SUBNET}.1"
GRPC_PORT = 50051  # the control plane's namespace is its own: the port is free there
NFT = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
# Inbound to the control plane: its gRPC port only. Outbound from a site: that port only (replies to what it
# opened are "established").
CONTROL_PLANE_RULES = f"""
table inet florist {{
  chain input {{ type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    tcp dport {GRPC_PORT} accept
  }}
}}
"""
SITE_RULES = f"""
table inet florist {{
  chain output {{ type filter hook output priority 0; policy drop;
    oif lo accept
    ct state established,related accept
    ip daddr {CONTROL_PLANE_IP} tcp dport {GRPC_PORT} accept
  }}
}}
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs the suite as root)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="the `ip` command (iproute2) is not installed"),
    pytest.mark.skipif(NFT is None, reason="nftables is not installed (`make system-deps` installs it as root)"),
]


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class Network:
    switch: str
    control_plane: str
    sites: list[str]

    def exec(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]


@pytest.fixture
def network() -> Iterator[Network]:
    tag = uuid.uuid4().hex[:6]
    net = Network(f"fg{tag}sw", f"fg{tag}cp", [f"fg{tag}s1", f"fg{tag}s2"])
    hosts = [net.control_plane, *net.sites]
    try:
        for namespace in [net.switch, *hosts]:
            run("ip", "netns", "add", namespace)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
        run("ip", "-n", net.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", net.switch, "link", "set", "br0", "up")
        for i, host in enumerate(hosts, start=1):
            run("ip", "-n", net.switch, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host)
            run("ip", "-n", net.switch, "link", "set", f"p{i}", "master", "br0", "up")
            run("ip", "-n", host, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            run("ip", "-n", host, "link", "set", "eth0", "up")
        yield net
    finally:
        for namespace in [*hosts, net.switch]:
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway CA and a control-plane certificate for its namespace address."""
    return issue_pki(tmp_path, [CONTROL_PLANE_IP, "127.0.0.1"])


def firewall(net: Network) -> None:
    """Drop everything but the control plane's gRPC port, both at the control plane and at the sites."""
    assert NFT is not None
    for namespace, rules in [(net.control_plane, CONTROL_PLANE_RULES)] + [(s, SITE_RULES) for s in net.sites]:
        subprocess.run([*net.exec(namespace), NFT, "-f", "-"], input=rules, check=True, text=True, timeout=30)


def reaches(net: Network, namespace: str, port: int) -> str:
    """What a TCP connect from `namespace` to the control plane's `port` meets: connected, refused or dropped."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('{CONTROL_PLANE_IP}', {port}), timeout=2).close(); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError: print('dropped')\n"
    )
    return run(*net.exec(namespace), sys.executable, "-c", probe).strip()


def listening(net: Network, namespace: str) -> list[str]:
    """Local addresses of every listening TCP socket in the namespace."""
    lines = run(*net.exec(namespace), "ss", "-ltnH").splitlines()
    return [line.split()[3] for line in lines if line.strip()]


def test_two_sites_in_their_own_namespaces_train_over_tls_with_agent_tokens(
    network: Network, pki: Pki, tmp_path: Path, demo_data: list[str]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"admin {sha('ops-secret')} ops\nagent {sha('s1-secret')} site-1\nagent {sha('s2-secret')} site-2\n"
    )
    roots = []
    for i, data in enumerate(demo_data, start=1):
        root = tmp_path / f"site-{i}"
        root.mkdir()
        shutil.copy(data, root / "c.pt")
        roots.append(root)
    firewall(network)
    serve = subprocess.Popen(
        [
            *network.exec(network.control_plane),
            str(BIN / "florist-grpc"), "serve", "--host", CONTROL_PLANE_IP, "--port", str(GRPC_PORT),
            "--data-dir", str(tmp_path / "florist"), "--auth-file", str(tokens),
            "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
        ],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "a"),  # noqa: SIM115 - closed with the process
        text=True,
    )  # fmt: skip
    agents: list[AgentProcess] = []
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "listening on" in line, (tmp_path / "serve.log").read_text()
        address = line.strip().rsplit(" ", 1)[-1]
        assert address == f"{CONTROL_PLANE_IP}:{GRPC_PORT}"
        # The rules hold: the gRPC port answers, any other port is silently dropped (not even refused).
        assert reaches(network, network.sites[0], GRPC_PORT) == "connected"
        assert reaches(network, network.sites[0], GRPC_PORT + 1) == "dropped"

        # Plaintext to a non-loopback control plane is refused unless --insecure: the token never leaves in clear.
        plain = subprocess.run(
            [*network.exec(network.sites[0]), *agent_command(address, "site-1", roots[0])],
            capture_output=True, text=True, timeout=60, env={**os.environ, "FLORIST_AGENT_TOKEN": "s1-secret"},
            check=False,
        )  # fmt: skip
        assert plain.returncode == 2 and "plaintext" in plain.stderr, plain.stderr

        for i, (namespace, root) in enumerate(zip(network.sites, roots, strict=True), start=1):
            agents.append(
                start_agent(
                    address, f"site-{i}", root, "--tls-ca", str(pki.ca),
                    token=f"s{i}-secret", prefix=network.exec(namespace),
                )
            )  # fmt: skip

        spec = {
            "address": address,
            "ca": str(pki.ca),
            "token": "ops-secret",
            "refused": {"unknown": [["nowhere", "c.pt"]], "escape": [["site-1", "../site-2/c.pt"]]},
            "clients": [["site-1", "c.pt"], ["site-2", "c.pt"]],
        }
        driver = subprocess.run(
            [*network.exec(network.control_plane), sys.executable, "-m", "tests.e2e.netns_driver", json.dumps(spec)],
            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
        )  # fmt: skip
        assert driver.returncode == 0, driver.stderr[-3000:]
        seen = json.loads(driver.stdout.strip().splitlines()[-1])

        assert set(seen["agents"]) == {"site-1", "site-2"} and all("cpu" in d for d in seen["agents"].values())
        assert seen["unknown"]["code"] == "FAILED_PRECONDITION" and "nowhere" in seen["unknown"]["details"]
        assert seen["escape"]["code"] == "FAILED_PRECONDITION" and "outside" in seen["escape"]["details"]
        assert seen["unknown"]["state"] == seen["escape"]["state"] == "JOB_STATE_NOT_STARTED"
        assert seen["final_state"] == "JOB_STATE_FINISHED_SUCCESSFULLY", seen["error_message"]
        assert seen["server_address"].startswith(CONTROL_PLANE_IP) and seen["contiguous"]
        for client in seen["clients"]:
            assert client["state"] == "CLIENT_STATE_FINISHED"
            assert "shutdown" in client["report"] and set(client["report"]["rounds"]) == {"1", "2"}
        assert all(log.strip() for log in seen["logs"])  # each site's client log, read through its session
        # Each site's FL client reached the FL server through its agent's tunnel, joined on the control plane.
        served = (tmp_path / "serve.log").read_text()
        for i in (1, 2):
            assert f"agent site-{i}: client" in served, served[-3000:]
        assert "FL connection joined to 127.0.0.1:" in served
        # Its remote clients all tunnelled, so the job's FL server listened on loopback only: nothing in the control
        # plane's namespace listened beyond loopback but the gRPC port.
        port = seen["server_address"].rsplit(":", 1)[1]
        listened = {a.replace("[::ffff:", "").replace("]:", ":") for a in seen["listening"]}  # IPv4-mapped as v4
        assert seen["looked_mid_round"]  # one look was taken while the server was in its first round
        assert f"127.0.0.1:{port}" in listened, listened
        assert {a for a in listened if not a.startswith(("127.", "[::1"))} == {f"{CONTROL_PLANE_IP}:{GRPC_PORT}"}

        # Sites dial out: nothing at a site listens beyond loopback (the agent's own Redis for its clients).
        for namespace in network.sites:
            addresses = listening(network, namespace)
            assert addresses and all(a.startswith(("127.", "[::1]")) for a in addresses), addresses
    finally:
        for agent in agents:
            agent.stop()
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
