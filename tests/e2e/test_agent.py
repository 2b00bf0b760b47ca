"""Sites dial out: `florist-grpc agent` sessions to a control plane on loopback.

Agents connect with one outbound stream; jobs name them in ClientInfo.agent; their clients' reports arrive in the
same event log as local ones; refusals happen before anything runs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.testing.certificates import issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig
from tests.e2e.sites import AgentProcess, RawSession, agent_job, list_agents, sha, start_agent
from tests.helpers import fl_processes, wait_for


def test_a_connected_agent_is_listed_with_its_devices_and_version(
    plane: ControlPlaneThread, site: AgentProcess
) -> None:
    (info,) = list_agents(plane)
    assert info.name == "site-a" and info.connected
    assert "cpu" in info.devices and info.version
    assert info.data_root == str(site.root.resolve())


def test_a_job_naming_an_agent_that_is_not_connected_is_refused_and_nothing_runs(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    job = plane.create(agent_job([demo_data[0]], ["nowhere"]))
    error = start_refused(plane, job.id)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "nowhere" in (error.details() or "")
    assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED
    assert not fl_processes()


@pytest.mark.parametrize("escape", ["../outside.pt", "ABSOLUTE_OUTSIDE", "link.pt", "PREFIX_TRICK", "missing.pt"])
def test_a_data_path_outside_the_agent_data_root_is_refused_before_anything_runs(
    plane: ControlPlaneThread, site: AgentProcess, demo_data: list[str], escape: str
) -> None:
    outside = site.root.parent / "outside.pt"
    shutil.copy(demo_data[0], outside)
    twin = Path(str(site.root) + "-evil")  # shares the root's string prefix, but is not inside it
    twin.mkdir(exist_ok=True)
    shutil.copy(demo_data[0], twin / "x.pt")
    (site.root / "link.pt").unlink(missing_ok=True)
    (site.root / "link.pt").symlink_to(outside)
    path = {"ABSOLUTE_OUTSIDE": str(outside), "PREFIX_TRICK": str(twin / "x.pt")}.get(escape, escape)
    job = plane.create(agent_job([path], ["site-a"]))
    error = start_refused(plane, job.id)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert "site-a" in (error.details() or "") and "data_path" in (error.details() or "")
    assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED
    assert not fl_processes()


def test_an_invalid_device_or_agent_name_is_invalid_argument(plane: ControlPlaneThread, demo_data: list[str]) -> None:
    message = agent_job([demo_data[0], demo_data[1]], ["bad name!", ""])
    message.clients[1].device = "gpu please"
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(message)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.clients[0].agent" in (raised.value.details() or "")
    assert "job.clients[1].device" in (raised.value.details() or "")


@pytest.fixture
def auth_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {sha('root')} ops\nviewer {sha('look')} dash\nagent {sha('a-secret')} site-a\n")
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens)
    yield plane
    plane.stop()


def test_an_agent_token_opens_only_its_own_session(auth_plane: ControlPlaneThread) -> None:
    own = RawSession(auth_plane.channel, "site-a", token="a-secret")
    assert own.first().HasField("welcome")
    own.close()
    for name, token in [("site-b", "a-secret"), ("site-a", "root"), ("site-a", "")]:
        other = RawSession(auth_plane.channel, name, token=token)
        with pytest.raises(grpc.RpcError) as raised:
            other.first()
        expected = grpc.StatusCode.UNAUTHENTICATED if not token else grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.code() == expected, (name, token)
        other.close()


def test_an_agent_token_may_not_call_anything_else_and_viewers_list_agents(auth_plane: ControlPlaneThread) -> None:
    jobs = job_service_pb2_grpc.JobServiceStub(auth_plane.channel)
    with pytest.raises(grpc.RpcError) as raised:
        jobs.ListJobs(job_service_pb2.ListJobsRequest(), metadata=(("authorization", "Bearer a-secret"),), timeout=10)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    agents = agent_grpc.AgentServiceStub(auth_plane.channel)
    with pytest.raises(grpc.RpcError) as raised:
        agents.ListAgents(agent_pb.ListAgentsRequest(), metadata=(("authorization", "Bearer a-secret"),), timeout=10)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = agents.ListAgents(agent_pb.ListAgentsRequest(), metadata=(("authorization", "Bearer look"),), timeout=10)
    assert list(listed.agents) == []


def test_a_second_session_under_the_same_name_replaces_the_first(plane: ControlPlaneThread) -> None:
    first = RawSession(plane.channel, "site-a")
    assert first.first().HasField("welcome")
    second = RawSession(plane.channel, "site-a")
    assert second.first().HasField("welcome")
    assert first.code_at_end() == grpc.StatusCode.ABORTED
    (info,) = list_agents(plane)
    assert info.connected
    second.close()
    wait_for(lambda: not list_agents(plane)[0].connected, 10, "the closed session to be seen")


def test_an_agent_replaced_by_another_with_its_name_exits_with_an_error(
    plane: ControlPlaneThread, site_root: Path
) -> None:
    agent = start_agent(plane.address, "site-a", site_root)
    intruder = RawSession(plane.channel, "site-a")
    assert intruder.first().HasField("welcome")
    assert agent.process.wait(30) == 1
    intruder.close()
    # It leaves its site's Redis (and clients) for the agent that replaced it; this test has no such agent.
    redis_state = json.loads((site_root / ".florist-agent" / "redis" / "redis.json").read_text())
    psutil.Process(redis_state["pid"]).kill()


def start_refused(plane: ControlPlaneThread, job_id: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job_id)
    return raised.value


def test_an_agent_with_a_client_certificate_connects_where_mutual_tls_is_required_and_one_without_does_not(
    tmp_path: Path, site_root: Path
) -> None:
    pki = issue_pki(tmp_path, ["127.0.0.1"])
    tls = TLSConfig(pki.chain, pki.key, client_ca_file=pki.ca)  # clients must show a certificate of this CA
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=tls)
    trust = ("--tls-ca", str(pki.ca), "--no-launcher-pool")  # no FL process runs here: no pool needed
    try:
        identity = ("--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
        agent = start_agent(plane.address, "site-a", site_root, *trust, *identity)
        assert agent.stop() == 0
        other_root = tmp_path / "site-b"
        other_root.mkdir()
        without = start_agent(plane.address, "site-b", other_root, *trust, wait=False)
        log = tmp_path / "site-b-agent.log"
        assert wait_for(lambda: "session to" in log.read_text(), 30), "the refused session is logged"
        assert without.process.poll() is None and without.lines.empty()  # still trying, never connected
        assert without.stop() == 0
    finally:
        plane.stop(1.0)
