"""What the commands print, by the conventions people and programs expect: integers as integers, text as
written, a list as NDJSON, quiet on a closed pipe, nothing half-written left behind, recipe files ignored by git."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.testing.plane import ControlPlaneThread
from tests.cli.conftest import Invoke
from tests.helpers import job_message, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_struct_numbers_that_are_integers_print_as_integers(cli: Invoke, plane: ControlPlaneThread) -> None:
    message = job_message(["/d/c0.pt"], local_epochs=40)
    message.model_config.update({"hidden_sizes": [64], "dropout": 0.25})
    job_id = plane.create(message).id
    shown = cli("job", "get", job_id, "--address", plane.address).stdout
    assert '"local_epochs": 40' in shown and '"hidden_sizes": [64]' in shown and '"dropout": 0.25' in shown
    assert ".0" not in shown.split("config", 1)[1].split("client 0")[0]
    as_json = json.loads(cli("job", "get", job_id, "--address", plane.address, "-o", "json").stdout)
    assert type(as_json["server_config"]["local_epochs"]) is int and as_json["model_config"]["dropout"] == 0.25
    catalog = json.loads(cli("catalog", "--address", plane.address, "-o", "json").stdout)
    [mlp] = [m for m in catalog["models"] if m["name"] == "MLP"]
    default = mlp["config_schema"]["properties"]["hidden_sizes"]["default"]
    assert default == [64] and type(default[0]) is int


def test_catalog_text_is_shown_as_written_not_read_as_markup(cli: Invoke, plane: ControlPlaneThread) -> None:
    shown = cli("catalog", "--address", plane.address).stdout
    assert "samples [channels, height, width]" in shown


class Agent:
    """An agent session as the control plane sees one: a Connect stream that said hello."""

    def __init__(self, plane: ControlPlaneThread, name: str) -> None:
        self.outbox: queue.Queue[agent_pb.ConnectRequest | None] = queue.Queue()
        hello = agent_pb.AgentHello(name=name, version="test", devices=["cpu"], data_root="/data")
        self.outbox.put(agent_pb.ConnectRequest(hello=hello))
        self.stream = agent_grpc.AgentServiceStub(plane.channel).Connect(iter(self.outbox.get, None))

    def close(self) -> None:
        self.outbox.put(None)
        self.stream.cancel()


@pytest.fixture
def two_agents(plane: ControlPlaneThread) -> Iterator[None]:
    agents = [Agent(plane, "site-a"), Agent(plane, "site-b")]
    stub = agent_grpc.AgentServiceStub(plane.channel)
    listed = lambda: [a.name for a in stub.ListAgents(agent_pb.ListAgentsRequest(), timeout=10).agents]  # noqa: E731
    wait_for(lambda: sorted(listed()) == ["site-a", "site-b"], 30, "both agents to be listed")
    yield
    for agent in agents:
        agent.close()


def test_agents_in_json_prints_nothing_without_agents(cli: Invoke, plane: ControlPlaneThread) -> None:
    none = cli("agents", "--address", plane.address, "-o", "json")
    assert none.exit_code == 0 and none.stdout == ""


def test_agents_in_json_lists_each_agent_on_its_own_line(
    cli: Invoke, plane: ControlPlaneThread, two_agents: None
) -> None:
    result = cli("agents", "--address", plane.address, "-o", "json")
    agents = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(a["name"] for a in agents) == ["site-a", "site-b"]
    assert all(a["connected"] and a["devices"] == ["cpu"] for a in agents)


def test_a_failed_download_leaves_no_partial_file(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    result = cli("model", "download", "no-such-job", "--out", models / "x.safetensors", "--address", plane.address)
    assert result.exit_code == 1 and "NOT_FOUND" in result.stderr
    assert list(models.iterdir()) == []


@pytest.mark.parametrize("args", [["job", "list", "-o", "json"], ["health"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(plane: ControlPlaneThread, args: list[str]) -> None:
    """`florist-grpc job list | head -1`: once the reader has gone, no `[Errno 32] Broken pipe` and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes
    try:
        done = subprocess.run(
            [sys.executable, "-m", "florist_grpc", *args, "--address", plane.address],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 1


def test_the_files_the_readme_recipes_make_are_ignored_by_git() -> None:
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True, check=False).returncode:
        pytest.skip("not a git checkout")
    made = [
        "tokens.txt",
        "auth.txt",
        "site-a.token",
        "secrets/admin.token",
        "secrets/ca-key.pem",
        "secrets/server.pem",
        "ca.pem",
        "ca.crt",
        "server.key",
        ".env",
        "job.json",
        "model.json",
        "model.safetensors",
        "x.safetensors.part",
        "curves.png",
        "curves.csv",
        "job-done.json",
        "data/client0.pt",
    ]
    checked = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "--verbose", "--non-matching", *made],
        capture_output=True,
        text=True,
        check=False,
    )
    not_ignored = [line.split("\t", 1)[1] for line in checked.stdout.splitlines() if line.startswith("::")]
    assert not_ignored == []
    # ... while the job files and data the repository ships stay tracked.
    shipped = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--ignored", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shipped.stdout == ""
