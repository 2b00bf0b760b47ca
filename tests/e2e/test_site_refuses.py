"""Defence in depth: a real agent refuses a launch or data check its policy excludes whatever the control plane asks
(here a control plane written by the test, which asks anyway), and every launch, stop and data check it performs or
refuses is one JSON line in its audit log, naming who, what, the job, the client and the outcome, never data."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.launch.agent_codec import command_to_proto, message_from_proto
from florist_grpc.launch.agent_protocol import (
    AgentHello,
    AgentMessage,
    CheckData,
    ClientJob,
    Command,
    DataCheckResult,
    LaunchClient,
    ProcessStarted,
    RequestFailed,
    StopClient,
    Welcome,
)
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc
from florist_grpc.testing.plane import wait_for
from tests.e2e.sites import AgentProcess, start_agent


class AskingControlPlane(pb_grpc.AgentServiceServicer):
    """A control plane that welcomes one agent and sends whatever the test puts in `commands`; what the agent
    says arrives in `said`, as plain values."""

    def __init__(self) -> None:
        self.commands: queue.Queue[Command | None] = queue.Queue()
        self.said: queue.Queue[AgentMessage | None] = queue.Queue()

    def Connect(
        self, request_iterator: Iterator[pb.ConnectRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ConnectResponse]:  # type: ignore[override]
        def read() -> None:
            for message in request_iterator:
                self.said.put(message_from_proto(message))

        futures.ThreadPoolExecutor(1).submit(read)
        yield command_to_proto(Welcome())
        while (command := self.commands.get()) is not None:
            yield command_to_proto(command)

    def reply(self, kind: type, timeout: float = 60) -> AgentMessage:
        """The next message of `kind` (or a RequestFailed) the agent sends."""
        while True:
            message = self.said.get(timeout=timeout)
            if isinstance(message, kind | RequestFailed):
                return message  # type: ignore[return-value]


@pytest.fixture
def asking(tmp_path: Path) -> Iterator[tuple[AskingControlPlane, str]]:
    servicer = AskingControlPlane()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_AgentServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_service_port()}"
    server.add_insecure_port(address)
    server.start()
    yield servicer, address
    servicer.commands.put(None)
    server.stop(0)


def _launch(request_id: str, uuid: str, job: ClientJob) -> LaunchClient:
    training = training_config("FEDAVG", {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1})
    # Nothing listens at the FL server's address: an allowed client runs (retrying) until it is stopped.
    run = ClientRun(f"127.0.0.1:{free_service_port()}", "", uuid, "MLP", "SGD", "FEDAVG", "mine.pt", training)
    return LaunchClient(request_id, run, job=job)


def _audit(root: Path, count: int) -> list[dict[str, object]]:
    path = root / ".florist-agent" / "audit.jsonl"
    lines = wait_for(lambda: (ls := path.read_text().splitlines()) and len(ls) >= count and ls, 30, "audit lines")
    return [json.loads(line) for line in lines]


def test_the_agent_refuses_what_its_policy_excludes_and_audits_everything(
    asking: tuple[AskingControlPlane, str], site_root: Path
) -> None:
    control_plane, address = asking
    agent: AgentProcess = start_agent(address, "site-a", site_root, "--allow-project", "alpha")
    try:
        hello = control_plane.said.get(timeout=30)
        assert isinstance(hello, AgentHello) and hello.allowed_projects == ("alpha",)
        beta = ClientJob("job-b", "beta", "mallory", "MLP", 0)
        alpha = ClientJob("job-a", "alpha", "ann", "MLP", 1)
        control_plane.commands.put(_launch("r1", "refused1", beta))
        refused = control_plane.reply(ProcessStarted)
        assert isinstance(refused, RequestFailed) and refused.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert "agent site-a does not run jobs of project 'beta' (--allow-project alpha)" in refused.message
        control_plane.commands.put(CheckData("r2", "mine.pt", job=beta))
        checked = control_plane.reply(DataCheckResult)
        assert isinstance(checked, DataCheckResult) and not checked.ok and "project 'beta'" in checked.problem
        control_plane.commands.put(CheckData("r3", "mine.pt", job=alpha))
        assert control_plane.reply(DataCheckResult) == DataCheckResult("r3", ok=True)
        control_plane.commands.put(_launch("r4", "allowed1", alpha))
        started = control_plane.reply(ProcessStarted)
        assert isinstance(started, ProcessStarted), started
        control_plane.commands.put(StopClient("allowed1"))
        audit = _audit(site_root, 5)
    finally:
        assert agent.stop() == 0
    assert not (site_root / ".florist-agent" / "logs" / "refused1.log").exists()  # nothing ran for it
    shown = [{k: e[k] for k in ("who", "what", "job", "client", "outcome")} for e in audit]
    assert shown == [
        {"who": "mallory", "what": "launch", "job": "job-b", "client": "refused1", "outcome": "refused"},
        {"who": "mallory", "what": "check_data", "job": "job-b", "client": "#0", "outcome": "refused"},
        {"who": "ann", "what": "check_data", "job": "job-a", "client": "#1", "outcome": "ok"},
        {"who": "ann", "what": "launch", "job": "job-a", "client": "allowed1", "outcome": "ok"},
        {"who": "ann", "what": "stop", "job": "job-a", "client": "allowed1", "outcome": "ok"},
    ]
    assert {e["agent"] for e in audit} == {"site-a"} and {e["project"] for e in audit} == {"beta", "alpha"}
    assert all(e["data_path"] == "mine.pt" for e in audit[:4])
    assert "(--allow-project alpha)" in str(audit[0]["reason"])
    data = (site_root / "mine.pt").read_bytes()[:64]
    assert data.hex() not in json.dumps(audit)  # paths and names only, never the data
