"""An agent that cannot work says why, once.

A refused token ends it with one line and exit 2 (the control plane logs the refusal, with the agent's name, its
address and why); a control plane it cannot reach is logged when the failure is new, with the CLI's hint, not at
every redial; a second agent on a data root in use exits naming the first and touches nothing of it; the site's
Redis is supervised, and the agent's health reaches ListAgents.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import redis

from florist_grpc.agent.session import Agent, Refused
from florist_grpc.config import AgentSettings
from florist_grpc.metrics.redis_users import CONTROL_USER
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.certificates import issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig
from tests.e2e.sites import AgentProcess, agent_command, list_agents, sha, start_agent
from tests.helpers import job_message, wait_for

# What the agent's log showed while it retried a refused token, from asyncio and grpc.aio's insides.
INTERNALS = ("Task was destroyed", "asynchronous generator", "Task exception was never retrieved", "Traceback")


@pytest.fixture
def auth_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"agent {sha('a-secret')} site-a\nagent {sha('b-secret')} site-b\n")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens, launcher_pool=False)
    yield plane
    plane.stop()


def agent_log(root: Path, name: str = "site-a") -> str:
    return (root.parent / f"{name}-agent.log").read_text()


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("wrong", "UNAUTHENTICATED: unknown token"),
        ("", "UNAUTHENTICATED: missing 'authorization: Bearer TOKEN' metadata"),
        ("b-secret", "PERMISSION_DENIED: this token belongs to agent 'site-b', not 'site-a'"),
    ],
)
def test_a_refused_agent_exits_2_saying_why_in_one_line_and_the_control_plane_logs_it_once(
    auth_plane: ControlPlaneThread, site_root: Path, caplog: pytest.LogCaptureFixture, token: str, says: str
) -> None:
    caplog.set_level(logging.WARNING, logger="florist_grpc.api.agent_service")
    agent = start_agent(auth_plane.address, "site-a", site_root, "--no-launcher-pool", token=token, wait=False)
    assert agent.process.wait(90) == 2
    log = agent_log(site_root)
    assert [line for line in log.splitlines() if line.startswith("error:")] == [
        f"error: the control plane at {auth_plane.address} refused agent site-a: {says} (FLORIST_AGENT_TOKEN must "
        "be the token of an 'agent SHA256_HEX site-a' line of its auth file)"
    ], log
    assert not [internal for internal in INTERNALS if internal in log], log
    refusals: list[Any] = [r for r in caplog.records if r.getMessage().startswith("refused agent")]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert refusals[0].agent == "site-a" and refusals[0].peer.startswith("ipv4:127.0.0.1:")
    assert refusals[0].reason == says.split(": ", 1)[1]


def test_a_refused_agent_leaves_the_clients_it_adopted_running_with_their_redis(
    auth_plane: ControlPlaneThread, site_root: Path
) -> None:
    # A client a previous agent on this data root launched (a stand-in: the agent only looks at its process).
    client = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        state_dir = site_root / ".florist-agent"
        state_dir.mkdir()
        ref = {"pid": client.pid, "create_time": psutil.Process(client.pid).create_time(), "log_path": "/dev/null"}
        (state_dir / "clients.json").write_text(json.dumps({"abc123": ref}))
        agent = start_agent(auth_plane.address, "site-a", site_root, "--no-launcher-pool", token="typo", wait=False)
        assert agent.process.wait(90) == 2
        assert client.poll() is None  # a mistyped token does not end training: fixed, the agent adopts it again
        state = redis_state(site_root)
        assert state is not None and psutil.Process(state["pid"]).status() != psutil.STATUS_ZOMBIE
        psutil.Process(state["pid"]).kill()
    finally:
        client.kill()


def test_an_agent_that_cannot_reach_the_control_plane_logs_a_failure_when_it_is_new_with_the_cli_hint(
    tmp_path: Path, site_root: Path
) -> None:
    pki = issue_pki(tmp_path, ["127.0.0.1"])
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.chain, pki.key), launcher_pool=False)
    try:
        # No --tls-ca: plaintext against TLS fails like a control plane that is not there (UNAVAILABLE).
        agent = start_agent(plane.address, "site-a", site_root, "--no-launcher-pool", wait=False)
        wait_for(lambda: "(4 attempts)" in agent_log(site_root), 60, "the agent to have failed 4 times")
        assert agent.stop() == 0
    finally:
        plane.stop()
    log = agent_log(site_root)
    failures = [line for line in log.splitlines() if "session to" in line]
    assert len(failures) == 3, log  # attempts 1, 2 and 4: the same failure is not logged at every redial
    assert all(
        line.endswith("(is the control plane running there? if it serves TLS, pass --tls-ca)") for line in failures
    )
    assert not [internal for internal in INTERNALS if internal in log], log


def redis_state(root: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((root / ".florist-agent" / "redis" / "redis.json").read_text())
    except (OSError, ValueError):
        return None  # being rewritten
    return state


def test_a_second_agent_on_a_data_root_in_use_exits_naming_the_first_and_leaves_its_redis_alone(
    plane: ControlPlaneThread, site: AgentProcess, site_root: Path
) -> None:
    state = redis_state(site_root)
    assert state is not None
    second = subprocess.run(
        agent_command(plane.address, "site-b", site_root, "--no-launcher-pool"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: data root {site_root.resolve()} is in use by another florist-grpc agent (pid {site.process.pid})"
    )
    assert psutil.Process(state["pid"]).status() != psutil.STATUS_ZOMBIE
    assert redis_state(site_root) == state
    (info,) = list_agents(plane)
    assert info.name == "site-a" and info.connected and info.problem == ""


def site_a(plane: ControlPlaneThread) -> agent_pb.AgentInfo:
    (info,) = list_agents(plane)
    return info


def test_an_agent_reports_a_redis_that_does_not_answer_and_restarts_one_that_died(
    plane: ControlPlaneThread, site: AgentProcess, site_root: Path
) -> None:
    first = redis_state(site_root)
    assert first is not None and site_a(plane).problem == ""
    server = psutil.Process(first["pid"])
    server.suspend()  # alive, but answering nothing: it cannot be restarted, only reported
    try:
        unhealthy = wait_for(lambda: (info := site_a(plane)).problem and info, 30, "the agent to report its Redis")
        # A job with a client there is refused before anything launches, naming the agent and its problem.
        job = job_message(["mine.pt"], rounds=1)
        job.clients[0].agent = "site-a"
        job_id = plane.create(job).id
        with pytest.raises(grpc.RpcError) as refused:
            plane.start(job_id)
        table = subprocess.run(
            [sys.executable, "-m", "florist_grpc", "agents", "--address", plane.address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "400"},
        ).stdout
    finally:
        server.resume()
    assert unhealthy.connected and f"its Redis (port {first['port']}) does not answer" in unhealthy.problem
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"job.clients[0]: agent site-a cannot run clients now: {unhealthy.problem}" in refused.value.details()
    assert plane.get(job_id).state == job_pb2.JOB_STATE_NOT_STARTED
    assert "PROBLEM" in table and unhealthy.problem in table  # `agents` shows it too
    wait_for(lambda: site_a(plane).problem == "", 30, "the agent to report itself healthy again")

    server.kill()
    restarted = wait_for(
        lambda: (state := redis_state(site_root)) is not None and state["pid"] != first["pid"] and state,
        30,
        "the agent to restart its Redis",
    )
    assert restarted["port"] == first["port"]  # its clients were told that address
    secret = (site_root / ".florist-agent" / "redis" / "secret").read_text().strip()
    with redis.Redis(port=restarted["port"], username=CONTROL_USER, password=secret, socket_timeout=5) as client:
        assert client.ping()  # with its users (ACL file) as before
    assert site_a(plane).problem == ""


def test_a_session_that_ended_leaves_no_grpc_task_waiting_on_its_requests(
    auth_plane: ControlPlaneThread, site_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # gRPC's task that writes the request stream waited on the outbox for good once the call had failed: a task
    # per refused session, destroyed pending (and its generator closed while running) whenever GC came by.
    settings = AgentSettings(auth_plane.address, "site-a", site_root, token="wrong", launcher_pool=False)

    async def refused_three_times() -> None:
        agent = Agent(settings)
        await agent.start()
        try:
            for _ in range(3):
                with pytest.raises(Refused):
                    await agent.run()
            gc.collect()
            await asyncio.sleep(0.1)
        finally:
            await agent.stop()

    asyncio.run(refused_three_times())
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
