"""An agent session's answers to the control plane: a launch the site itself cannot carry out (its disk refuses the
client's log) is answered with what happened, never left unanswered for the control plane to time out on, and the
FL tunnel opened for it is closed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from google.rpc import code_pb2

from florist_grpc.agent.audit import AuditLog
from florist_grpc.agent.clients import SiteClients
from florist_grpc.agent.exchange import Exchange
from florist_grpc.agent.reports import SiteReports
from florist_grpc.agent.tunnels import Tunnels
from florist_grpc.config import AgentSettings, Timeouts
from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.launch.agent_protocol import AgentMessage, ClientJob, LaunchClient, RequestFailed

RUN = ClientRun(
    server_address="127.0.0.1:9",
    redis_address="",
    uuid="c0ffee",
    model="MLP",
    optimizer="SGD",
    client_type="FEDAVG",
    data_path="a.pt",
    training=training_config("FEDAVG", {"n_server_rounds": 1, "batch_size": 8, "local_epochs": 1}),
)


def test_a_launch_the_site_cannot_carry_out_is_answered_audited_and_its_tunnel_closed(tmp_path: Path) -> None:
    settings = AgentSettings(control_plane="127.0.0.1:1", name="site-a", data_root=tmp_path)
    state_dir = tmp_path / ".florist-agent"
    state_dir.mkdir()
    (tmp_path / "a.pt").write_bytes(b"")
    (state_dir / "logs").write_text("a file where the clients' log directory belongs")  # no log can be opened

    async def scenario() -> list[AgentMessage]:
        reports = SiteReports(state_dir, Timeouts())
        await asyncio.to_thread(reports.start, [])
        audit = AuditLog("site-a", state_dir / "audit.jsonl")
        audit.open()
        clients = SiteClients(tmp_path, state_dir, 5.0, 30.0, None)
        sent: list[AgentMessage] = []
        answered = asyncio.Event()

        def send(message: AgentMessage) -> None:
            sent.append(message)
            answered.set()

        tasks: dict[str, asyncio.Task[object]] = {}
        tunnels = Tunnels("site-a", "", state_dir)
        exchange = Exchange(clients, reports, settings, send, tasks, lambda: "", "", audit, tunnels)
        try:
            exchange.handle(LaunchClient("r1", RUN, job=ClientJob("j1", "default", "ann", "MLP", 0)))
            await asyncio.wait_for(answered.wait(), 30)
            # The launch's task ended with its answer: nothing is left running or unretrieved.
            await asyncio.wait_for(asyncio.gather(*tasks.values()), 10)
            assert json.loads((state_dir / "tunnels.json").read_text()) == {}  # no listener left for it
        finally:
            await asyncio.to_thread(reports.stop)
            audit.close()
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) == 1 and isinstance(sent[0], RequestFailed), sent
    assert sent[0].request_id == "r1" and sent[0].code == code_pb2.UNAVAILABLE
    assert "site site-a could not start the client" in sent[0].message
    lines = [json.loads(line) for line in (state_dir / "audit.jsonl").read_text().splitlines()]
    assert [(e["what"], e["outcome"], e["job"]) for e in lines] == [("launch", "failed", "j1")]
    assert "could not start the client" in lines[0]["reason"]
