"""Under a scheduler (serve --launcher slurm) a site's client is told where the FL server runs, the host it
advertised, whether or not the server was ready before the launch came to that client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from florist_grpc.domain.model import Client, Exit, Job, ProcessRef
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.jobs.data_check import DataShape
from florist_grpc.jobs.launch_sequence import LaunchSequence
from florist_grpc.jobs.starting import Starts
from florist_grpc.launch.launcher import LaunchSpec
from florist_grpc.testing.plane import TEST_TIMEOUTS

PLANNED = "controller:7000"  # the address the job planned; the scheduler runs the server on node7


@dataclass
class ScheduledServer:
    """An FL server a scheduler placed on node7; `ready` says whether it is ready at once."""

    ready: asyncio.Event
    ref: ProcessRef = field(default_factory=ProcessRef)
    clients_after_ready = False

    async def wait_ready(self) -> bool:
        await self.ready.wait()
        return True

    def advertised_host(self) -> str:
        return "node7" if self.ready.is_set() else ""

    def host_file(self) -> str:
        return "/shared/server.ready"

    def wait_exit(self, timeout: float) -> Exit | None:
        return None

    def poll(self) -> Exit | None:
        return None

    def log_tail(self) -> str:
        return ""


class Scheduler:
    name = "slurm"
    fl_servers_here = False

    def __init__(self, server_ready: str) -> None:
        self.ready = asyncio.Event()
        self._server_ready = server_ready

    def server_bind(self, server_address: str) -> str:
        return "0.0.0.0:7000"

    async def launch(self, spec: LaunchSpec) -> ScheduledServer:
        if spec.role == self._server_ready:
            self.ready.set()
        elif self._server_ready == "later":
            asyncio.get_running_loop().call_later(0.05, self.ready.set)
        return ScheduledServer(self.ready)


class Site:
    def __init__(self) -> None:
        self.runs: list[ClientRun] = []

    def tunnels(self, name: str) -> bool:
        return False

    async def launch(self, name: str, run: ClientRun, tls: bool, job: Any) -> Any:
        self.runs.append(run)
        return ScheduledServer(asyncio.Event())


class Nothing:
    """The follower, store and Redis users, as far as a launch needs them."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def create(self, uuids: list[str]) -> dict[str, Any]:
        return {u: type("Credentials", (), {"username": u, "password": "p"})() for u in uuids}


# Ready once placed: at its own launch, while the local clients are submitted, or only after them.
@pytest.mark.parametrize("server_ready", ["server", "client", "later"])
def test_a_sites_client_is_told_where_the_scheduler_placed_the_server(tmp_path: Path, server_ready: str) -> None:
    job = Job(
        id="j1",
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config={"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1},
        clients=[Client("a.csv"), Client("b.csv", agent="site-a")],
        create_time=datetime(2024, 1, 1, tzinfo=UTC),
        server_address=PLANNED,
    )
    site = Site()

    async def launch() -> None:
        starts = Starts()
        sequence = LaunchSequence(
            Nothing(),  # type: ignore[arg-type]
            Nothing(),  # type: ignore[arg-type]
            site,  # type: ignore[arg-type]
            starts,
            Nothing(),  # type: ignore[arg-type]
            "controller:6379",
            tmp_path,
            TEST_TIMEOUTS,
            None,
            Scheduler(server_ready),  # type: ignore[arg-type]
        )
        with starts.starting(job.id) as start:
            await sequence.run(job, DataShape((4,), 2), start)

    asyncio.run(launch())
    assert [run.server_address for run in site.runs] == ["node7:7000"]
