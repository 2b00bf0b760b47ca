"""FL traffic over the agent's connection vs direct to the FL server's port (issue 22), side by side in one run.

A control plane and two sites, each in its own network namespace on a bridge (root needed for `ip netns`), TLS
and an auth file. Each site runs two agents on their own data roots: one tunnels its clients' FL connections over
its session (the default), one runs `--fl-direct`. Jobs of an MLP with about 10 MB of weights, 2 site clients, 5
rounds, alternate between the tunnelled pair and the direct pair; per round: the FL server's own time from the
start of fit to the end of evaluation; the control plane's (`serve`'s) RSS and PSS sampled every 0.1 s per job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stats import record
from florist_grpc.testing.certificates import issue_pki

SUBNET = "10.201.0"  # inside the benchmark's own namespaces only
CONTROL_PLANE_IP = f"{SUBNET}.1"
PORT = 50051
HIDDEN_SIZES = [2048, 1152]  # with digits' 64 inputs and 10 classes: 2.5 M float32 weights, 10.0 MB
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, list[str]]]:
    """The control plane's namespace and two sites', on a bridge in a fourth; all deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    switch, cp, sites = f"fb{tag}sw", f"fb{tag}cp", [f"fb{tag}s1", f"fb{tag}s2"]
    hosts = [cp, *sites]
    try:
        for namespace in [switch, *hosts]:
            run("ip", "netns", "add", namespace)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        for i, host in enumerate(hosts, start=1):
            run("ip", "-n", switch, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host)
            run("ip", "-n", switch, "link", "set", f"p{i}", "master", "br0", "up")
            run("ip", "-n", host, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
            run("ip", "-n", host, "link", "set", "eth0", "up")
        yield cp, sites
    finally:
        for namespace in [*hosts, switch]:
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def measure(directory: Path, rounds: int, pairs: int) -> dict[str, Any]:
    pki = issue_pki(directory, [CONTROL_PLANE_IP, "127.0.0.1"])
    agents = [f"s{i}-{mode}" for mode in ("tunnel", "direct") for i in (1, 2)]
    lines = [f"admin {sha('ops')} ops", *(f"agent {sha(name)} {name}" for name in agents)]
    (directory / "tokens").write_text("\n".join(lines) + "\n")
    data = directory / "data"
    run(str(BIN / "florist-grpc"), "make-data", "--out", str(data))
    exec_in = ["ip", "netns", "exec"]
    with namespaces() as (cp, sites):
        logs = directory / "logs"
        logs.mkdir()
        serve = subprocess.Popen(
            [
                *exec_in, cp, str(BIN / "florist-grpc"), "serve", "--host", CONTROL_PLANE_IP, "--port", str(PORT),
                "--data-dir", str(directory / "florist"), "--auth-file", str(directory / "tokens"),
                "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
            ],
            stdout=subprocess.PIPE, stderr=open(logs / "serve.log", "w"), text=True,  # noqa: SIM115
        )  # fmt: skip
        assert serve.stdout is not None and "listening on" in serve.stdout.readline()
        for name in agents:
            site = sites[int(name[1]) - 1]
            root = directory / name
            root.mkdir()
            shutil.copy(data / f"client{int(name[1]) - 1}.pt", root / "c.pt")
            subprocess.Popen(
                [
                    *exec_in, site, str(BIN / "florist-grpc"), "agent", "--control-plane", f"{CONTROL_PLANE_IP}:{PORT}",
                    "--name", name, "--data-root", str(root), "--tls-ca", str(pki.ca),
                    *(["--fl-direct"] if name.endswith("direct") else []),
                ],
                stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "w"),  # noqa: SIM115
                env={**os.environ, "FLORIST_AGENT_TOKEN": name},
            )  # fmt: skip
        # Alternating, so that whatever else the machine does weighs on both modes alike.
        modes = [mode for _ in range(pairs) for mode in ("tunnel", "direct")]
        runs = [{"mode": mode, "agents": [f"s1-{mode}", f"s2-{mode}"]} for mode in modes]
        spec = {
            "address": f"{CONTROL_PLANE_IP}:{PORT}",
            "ca": str(pki.ca),
            "token": "ops",
            "serve_pid": serve.pid,
            "rounds": rounds,
            "hidden_sizes": HIDDEN_SIZES,
            "runs": runs,
        }
        driver = subprocess.run(
            [*exec_in, cp, sys.executable, "-m", "bench.tunnel_jobs", json.dumps(spec)],
            capture_output=True, text=True, timeout=3600, cwd=ROOT, check=False,
        )  # fmt: skip
        if driver.returncode != 0:
            raise SystemExit(f"bench.tunnel_jobs failed:\n{driver.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(driver.stdout.strip().splitlines()[-1])
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    # What the tunnels carried, as the control plane logged each FL connection's end.
    ended = [line for line in (logs / "serve.log").read_text().splitlines() if "FL connection ended" in line]
    result["tunnelled_connections"] = len(ended)
    result["tunnelled_bytes"] = [line.rsplit("(", 1)[-1].rstrip(")") for line in ended]
    return result


def run_bench(quick: bool) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("tunnel: skipped (network namespaces need root and iproute2)")
        return
    load_before = os.getloadavg()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="florist-bench-tunnel-") as directory:
        result = measure(Path(directory), rounds=2 if quick else 5, pairs=1 if quick else 3)
    for mode in ("tunnel", "direct"):
        jobs = [j for j in result["jobs"] if j["mode"] == mode]
        rounds = [s for j in jobs for s in j["round_seconds"]]
        rounds_after_first = [s for j in jobs for s in j["round_seconds"][1:]]
        record(
            "tunnel",
            mode=mode,
            jobs=len(jobs),
            succeeded=sum(j["state"] == "JOB_STATE_FINISHED_SUCCESSFULLY" for j in jobs),
            errors=[j["error"][:200] for j in jobs if j["error"]],
            round_seconds_mean=sum(rounds) / len(rounds) if rounds else None,
            round_seconds_after_first_mean=(
                sum(rounds_after_first) / len(rounds_after_first) if rounds_after_first else None
            ),
            round_seconds=[j["round_seconds"] for j in jobs],
            wall_seconds=[j["wall_seconds"] for j in jobs],
            rss_mib=[j["rss_mib"] for j in jobs],
            pss_mib=[j["pss_mib"] for j in jobs],
        )
    record("tunnel_bytes", connections=result["tunnelled_connections"], each=result["tunnelled_bytes"])
    record("tunnel_run", seconds=time.monotonic() - began, load_before=load_before, load_after=os.getloadavg())


if __name__ == "__main__":
    from bench.stats import dump

    run_bench("--quick" in sys.argv)
    dump(str(Path(__file__).parent / "results-tunnel.json"))
