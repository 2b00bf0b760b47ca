"""Sites dial out: `florist-grpc agent` sessions to a control plane on loopback.

Agents connect with one outbound stream; jobs name them in ClientInfo.agent; their clients' reports arrive in the
same event log as local ones; refusals happen before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf import json_format

from florist_grpc.domain import merge_patch
from florist_grpc.net import free_port
from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from tests.e2e.conftest import Served, serve, stop
from tests.e2e.sites import AgentProcess, RawSession, start_agent
from tests.helpers import PlaneThread, fl_processes, job_message, no_fl_process_left, short_timeouts, wait_for


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def site_root(tmp_path: Path, demo_data: list[str]) -> Path:
    root = tmp_path / "site-a"
    root.mkdir()
    shutil.copy(demo_data[0], root / "mine.pt")
    return root


@pytest.fixture
def site(plane: PlaneThread, site_root: Path) -> Iterator[AgentProcess]:
    agent = start_agent(plane.address, "site-a", site_root)
    yield agent
    assert agent.stop() == 0


def list_agents(plane: PlaneThread) -> list[agent_pb.AgentInfo]:
    stub = agent_grpc.AgentServiceStub(plane.channel)
    return list(stub.ListAgents(agent_pb.ListAgentsRequest(), timeout=10).agents)


def agent_job(data_paths: list[str], agents: list[str], rounds: int = 2) -> job_pb2.Job:
    message = job_message(data_paths, rounds=rounds)
    for client, agent in zip(message.clients, agents, strict=True):
        client.agent = agent
    return message


def site_rounds(plane: PlaneThread, job_id: str) -> dict[str, object]:
    rounds: dict[str, object] = json_format.MessageToDict(plane.get(job_id).clients[0].metrics).get("rounds", {})
    return rounds


def start_refused(plane: PlaneThread, job_id: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job_id)
    return raised.value


def test_a_connected_agent_is_listed_with_its_devices_and_version(plane: PlaneThread, site: AgentProcess) -> None:
    (info,) = list_agents(plane)
    assert info.name == "site-a" and info.connected
    assert "cpu" in info.devices and info.version
    assert info.data_root == str(site.root.resolve())


@pytest.mark.slow
def test_a_job_with_a_local_and_an_agent_run_client_trains_to_success(
    plane: PlaneThread, site: AgentProcess, demo_data: list[str]
) -> None:
    job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""]))
    plane.start(job.id)
    events = plane.events(job.id)
    assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, plane.get(job.id).error_message
    done = plane.get(job.id)
    for client in done.clients:
        assert client.state == job_pb2.CLIENT_STATE_FINISHED and "shutdown" in client.metrics
        assert set(client.metrics["rounds"]) == {"1", "2"}
    remote = "".join(
        chunk.text
        for chunk in plane.training.StreamLogs(
            training_pb.StreamLogsRequest(job_id=job.id, source=training_pb.LogSource(client_index=0)), timeout=30
        )
    )
    assert "Flower" in remote or "flwr" in remote.lower()  # the agent-side client's own log, read through the session


def test_a_job_naming_an_agent_that_is_not_connected_is_refused_and_nothing_runs(
    plane: PlaneThread, demo_data: list[str]
) -> None:
    job = plane.create(agent_job([demo_data[0]], ["nowhere"]))
    error = start_refused(plane, job.id)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "nowhere" in (error.details() or "")
    assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED
    assert not fl_processes()


@pytest.mark.parametrize("escape", ["../outside.pt", "ABSOLUTE_OUTSIDE", "link.pt", "PREFIX_TRICK", "missing.pt"])
def test_a_data_path_outside_the_agent_data_root_is_refused_before_anything_runs(
    plane: PlaneThread, site: AgentProcess, demo_data: list[str], escape: str
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


def test_an_invalid_device_or_agent_name_is_invalid_argument(plane: PlaneThread, demo_data: list[str]) -> None:
    message = agent_job([demo_data[0], demo_data[1]], ["bad name!", ""])
    message.clients[1].device = "gpu please"
    with pytest.raises(grpc.RpcError) as raised:
        plane.create(message)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.clients[0].agent" in (raised.value.details() or "")
    assert "job.clients[1].device" in (raised.value.details() or "")


@pytest.fixture
def auth_plane(tmp_path: Path) -> Iterator[PlaneThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {sha('root')} ops\nviewer {sha('look')} dash\nagent {sha('a-secret')} site-a\n")
    plane = PlaneThread(tmp_path / "florist", auth_file=tokens)
    yield plane
    plane.stop()


def test_an_agent_token_opens_only_its_own_session(auth_plane: PlaneThread) -> None:
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


def test_an_agent_token_may_not_call_anything_else_and_viewers_list_agents(auth_plane: PlaneThread) -> None:
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


def test_a_second_session_under_the_same_name_replaces_the_first(plane: PlaneThread) -> None:
    first = RawSession(plane.channel, "site-a")
    assert first.first().HasField("welcome")
    second = RawSession(plane.channel, "site-a")
    assert second.first().HasField("welcome")
    assert first.code_at_end() == grpc.StatusCode.ABORTED
    (info,) = list_agents(plane)
    assert info.connected
    second.close()
    wait_for(lambda: not list_agents(plane)[0].connected, 10, "the closed session to be seen")


def test_an_agent_replaced_by_another_with_its_name_exits_with_an_error(plane: PlaneThread, site_root: Path) -> None:
    agent = start_agent(plane.address, "site-a", site_root)
    intruder = RawSession(plane.channel, "site-a")
    assert intruder.first().HasField("welcome")
    assert agent.process.wait(30) == 1
    intruder.close()


@pytest.mark.slow
def test_an_agent_killed_mid_job_is_replaced_by_a_new_one_that_adopts_its_clients(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    plane = PlaneThread(tmp_path / "florist", timeouts=short_timeouts(agent_away_grace_seconds=60.0))
    agent = start_agent(plane.address, "site-a", site_root)
    try:
        job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=4))
        plane.start(job.id)
        wait_for(lambda: "1" in site_rounds(plane, job.id), 120, "round 1 at the site")
        os.kill(agent.process.pid, signal.SIGKILL)  # the agent only: its clients run in their own sessions
        agent.process.wait(10)
        wait_for(lambda: not list_agents(plane)[0].connected, 30, "the control plane to see the session end")
        agent = start_agent(plane.address, "site-a", site_root)
        events = plane.events(job.id)
        done = plane.get(job.id)
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        # Replaying the site client's patches rebuilds exactly what it reported: nothing was lost meanwhile.
        report: dict[str, object] = {}
        for event in events:
            if event.source.client_uuid == done.clients[0].uuid:
                report = merge_patch.apply(report, json_format.MessageToDict(event.patch))
        assert report == json_format.MessageToDict(done.clients[0].metrics)
        assert set(done.clients[0].metrics["rounds"]) == {"1", "2", "3", "4"} and "shutdown" in report
    finally:
        agent.stop()
        plane.stop()
        no_fl_process_left()


def site_client_pid(root: Path) -> int:
    recorded: dict[str, dict[str, int]] = json.loads((root / ".florist-agent" / "clients.json").read_text())
    (ref,) = recorded.values()
    return ref["pid"]


@pytest.mark.slow
def test_a_job_whose_agent_stays_away_past_the_grace_fails_naming_it_and_its_client_is_stopped_on_return(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    plane = PlaneThread(tmp_path / "florist", timeouts=short_timeouts(agent_away_grace_seconds=3.0))
    agent = start_agent(plane.address, "site-a", site_root)
    try:
        job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=1000))
        plane.start(job.id)
        wait_for(lambda: "1" in site_rounds(plane, job.id), 120, "round 1 at the site")
        orphan = site_client_pid(site_root)
        os.kill(agent.process.pid, signal.SIGKILL)
        agent.process.wait(10)
        failed = plane.wait_state(job.id, {job_pb2.JOB_STATE_FINISHED_WITH_ERROR}, timeout=60)
        assert "agent site-a" in failed.error_message and "disconnected" in failed.error_message
        # The site's client kept running without its agent; the agent's return stops it.
        agent = start_agent(plane.address, "site-a", site_root)
        wait_for(lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie", 60, "stop")
    finally:
        agent.stop()
        plane.stop()


@pytest.mark.slow
def test_a_restarted_control_plane_re_adopts_agent_run_clients_when_the_agent_reconnects(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    port = str(free_port())
    data_dir = tmp_path / "florist"
    served = serve(data_dir, "--port", port)
    agent = start_agent(served.address, "site-a", site_root)
    again: Served | None = None
    try:
        with grpc.insecure_channel(served.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            message = agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=40)
            job = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=message), timeout=10).job
            training_grpc.TrainingServiceStub(channel).StartTraining(
                training_pb.StartTrainingRequest(job_id=job.id), timeout=60
            )

            def site_round(n: int) -> bool:
                got = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), timeout=10).job
                return str(n) in json_format.MessageToDict(got.clients[0].metrics).get("rounds", {})

            wait_for(lambda: site_round(2), 120, "round 2 at the site")
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(10)
        again = serve(data_dir, "--port", port)
        agent.wait_line("connected to", 60)  # it redials the same address
        with grpc.insecure_channel(again.address) as channel:
            training = training_grpc.TrainingServiceStub(channel)
            request = training_pb.StreamMetricsRequest(job_id=job.id)
            events = [r.event for r in training.StreamMetrics(request, timeout=240)]
            done = (
                job_service_pb2_grpc.JobServiceStub(channel)
                .GetJob(job_service_pb2.GetJobRequest(job_id=job.id), timeout=10)
                .job
            )
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        site = json_format.MessageToDict(done.clients[0].metrics)
        assert len(site["rounds"]) == 40 and "shutdown" in site
    finally:
        agent.stop()
        stop(again or served)
