"""A one-node Slurm cluster of its own for tests and benchmarks: munged (as the munge user), slurmctld and slurmd,
with their config, state and logs in a temporary directory, on non-default ports; torn down by `stop`.

Known to work here (DESIGN.md, "Launchers"): Debian's slurm-wlm 22.05 and munge, proctrack/linuxproc, task/none,
select/cons_tres, no accounting, SlurmUser=root, batch_sched_delay=0 (sbatch -> running in under a second).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from florist_grpc.net import free_service_port

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/mungekey", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
START_SECONDS = 30.0


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "tests/slurm start slurmctld, slurmd and munged: they need root"
    missing = [p for p in DAEMONS if not os.access(p, os.X_OK)] + [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return f"Slurm or munge is not installed (missing {', '.join(missing)}; `make system-deps` installs them)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (Debian's munge package creates it)"
    return None


class SlurmCluster:
    def __init__(self) -> None:
        # Not under pytest's tmp dir: it is private to root (0700) and munged, as the munge user, must reach its dir.
        self.dir = Path(tempfile.mkdtemp(prefix="florist-slurm-"))
        self.dir.chmod(0o755)
        self.conf = self.dir / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._processes: list[subprocess.Popen[bytes]] = []
        # Where slurmctld (and the control plane beside it) is reached from the nodes.
        self.controller_address = "127.0.0.1"

    def start(self) -> None:
        try:
            self._start_munge()
            self._prepare_network()
            self._write_config()
            self._daemon(["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
            for name, argv in self._slurmds():
                self._daemon(argv, name)
            self._wait_idle()
        except BaseException:
            self.stop()
            raise

    # --- what a cluster of several nodes (slurm_netns.py) does differently -----------------------------------

    def _prepare_network(self) -> None:
        """Nothing: one node on loopback."""

    def _node_lines(self) -> str:
        return f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 State=UNKNOWN"

    def _slurmds(self) -> list[tuple[str, list[str]]]:
        return [("slurmd", ["/usr/sbin/slurmd", "-D", "-f", str(self.conf), "-N", self.node])]

    def _remove_network(self) -> None:
        """Nothing to remove."""

    @property
    def nodes(self) -> int:
        return 1

    def _daemon(self, argv: list[str], name: str) -> None:
        log = open(self.dir / f"{name}.out", "ab")  # noqa: SIM115 - the daemon's, closed with the process
        self._processes.append(
            subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env, start_new_session=True
            )
        )
        log.close()

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        munge_dir = self.dir / "munge"
        munge_dir.mkdir()
        munge_dir.chmod(0o755)  # munged insists that everyone may reach its socket
        key = munge_dir / "munge.key"
        subprocess.run(["/usr/sbin/mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        for path in (munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        self.munge_socket = munge_dir / "munge.socket"
        argv = [
            "/usr/sbin/runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground",
            f"--socket={self.munge_socket}", f"--key-file={key}", f"--log-file={munge_dir / 'munged.log'}",
            f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
        ]  # fmt: skip
        self._daemon(argv, "munged")
        self._wait(self.munge_socket.exists, "munged's socket")

    def _write_config(self) -> None:
        d = self.dir
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        self.conf.write_text(
            f"""ClusterName=florist-test
SlurmctldHost={self.node}({self.controller_address})
SlurmctldPort={free_service_port()}
SlurmdPort={free_service_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}/%n
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd-%n.pid"}
SlurmctldLogFile={d / "slurmctld.log"}
SlurmdLogFile={d / "slurmd-%n.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
{self._node_lines()}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def run(self, *argv: str) -> str:
        """A Slurm command against this cluster; its stdout."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True, timeout=30).stdout

    def _wait_idle(self) -> None:
        def idle() -> bool:
            with contextlib.suppress(subprocess.SubprocessError):
                return self.run("sinfo", "-h", "-N", "-o", "%T").split().count("idle") == self.nodes
            return False

        self._wait(idle, "every node to be idle")

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(f"{p.name}: {p.read_text()[-2000:]}" for p in sorted(self.dir.glob("*.log")))
                raise RuntimeError(f"Slurm test cluster: no {what} within {START_SECONDS:g}s\n{logs}")
            if any(p.poll() is not None for p in self._processes):
                outs = "\n".join(f"{p.name}: {p.read_text()[-2000:]}" for p in sorted(self.dir.glob("*.out")))
                raise RuntimeError(f"Slurm test cluster: a daemon exited waiting for {what}\n{outs}")
            time.sleep(0.1)  # polling a daemon's state: there is no event to wait on

    def squeue(self) -> list[str]:
        """Every job Slurm still has queued or running, as 'ID NAME STATE' lines."""
        return self.run("squeue", "-h", "-o", "%i %j %T").split()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.run("scancel", "--full", "--signal=KILL", "--user=root")
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                process.wait(timeout=5)
        self._processes.clear()
        self._remove_network()
        shutil.rmtree(self.dir, ignore_errors=True)
