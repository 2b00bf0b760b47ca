"""Sites dial out, with real training: agent-run clients' reports, logs, exits and stops reach the control plane
through the agent's session, across a killed agent, an agent that stays away, and a restarted control plane."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf import json_format

from florist_grpc.domain import merge_patch
from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.testing.certificates import issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig
from tests.e2e.conftest import Served, serve, stop
from tests.e2e.sites import AgentProcess, agent_job, list_agents, site_rounds, start_agent
from tests.helpers import no_fl_process_left, short_timeouts, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_a_job_with_a_local_and_an_agent_run_client_trains_to_success(
    plane: ControlPlaneThread, site: AgentProcess, demo_data: list[str]
) -> None:
    message = agent_job(["mine.pt", demo_data[1]], ["site-a", ""])
    message.resources.CopyFrom(job_pb2.JobResources(cpus=2))  # torch threads at the site too
    job = plane.create(message)
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
    assert "using 2 torch threads (Job.resources.cpus)" in remote


@pytest.mark.slow
def test_an_agent_killed_mid_job_is_replaced_by_a_new_one_that_adopts_its_clients(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    """With --fl-direct the FL connection does not depend on the agent: training goes on while it is replaced."""
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(agent_away_grace_seconds=60.0))
    agent = start_agent(plane.address, "site-a", site_root, "--fl-direct")
    try:
        job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=4))
        plane.start(job.id)
        wait_for(lambda: "1" in site_rounds(plane, job.id), 120, "round 1 at the site")
        # The site's client was forked from the agent's own launcher pool (one per host), in its own session.
        client = psutil.Process(site_client_pid(site_root))
        pool = client.parent()
        assert pool is not None and "florist_grpc.launch.pool_process" in " ".join(pool.cmdline())
        assert pool.ppid() == agent.process.pid and os.getsid(client.pid) == client.pid
        os.kill(agent.process.pid, signal.SIGKILL)  # the agent only: its clients run in their own sessions
        agent.process.wait(10)
        wait_for(lambda: not list_agents(plane)[0].connected, 30, "the control plane to see the session end")
        agent = start_agent(plane.address, "site-a", site_root, "--fl-direct")
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


@pytest.mark.slow
def test_a_killed_agent_takes_its_clients_tunnelled_fl_connection_and_the_job_ends_naming_it(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    """Over the tunnel (the default) the client's FL connection rides the agent's: killed mid-round, the round
    fails and the job ends naming the agent; the new agent adopts the client, and it is stopped."""
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(agent_away_grace_seconds=60.0))
    agent = start_agent(plane.address, "site-a", site_root)
    try:
        job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=6))
        plane.start(job.id)
        wait_for(lambda: "1" in site_rounds(plane, job.id), 120, "round 1 at the site")
        os.kill(agent.process.pid, signal.SIGKILL)
        agent.process.wait(10)
        agent = start_agent(plane.address, "site-a", site_root)
        events = plane.events(job.id)
        done = plane.get(job.id)
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
        assert "agent site-a's connection to the control plane dropped" in done.error_message, done.error_message
        assert done.clients[0].uuid in done.error_message
        wait_for(lambda: not psutil.pid_exists(site_client_pid(site_root)), 60, "the site's client to be stopped")
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
    # --fl-direct: the FL connection outlives the agent, so the away grace is what ends the job (over the tunnel the
    # connection goes with the agent: test_a_killed_agent_takes_its_clients_tunnelled_fl_connection...).
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=short_timeouts(agent_away_grace_seconds=3.0))
    agent = start_agent(plane.address, "site-a", site_root, "--fl-direct")
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
        agent = start_agent(plane.address, "site-a", site_root, "--fl-direct")
        wait_for(lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie", 60, "stop")
    finally:
        agent.stop()
        plane.stop()


@pytest.mark.slow
def test_a_restarted_control_plane_re_adopts_agent_run_clients_when_the_agent_reconnects(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    port = str(free_service_port())
    data_dir = tmp_path / "florist"
    served = serve(data_dir, "--port", port)
    # --fl-direct: a tunnelled FL connection runs through the control plane and ends with it (README "Run a site").
    agent = start_agent(served.address, "site-a", site_root, "--fl-direct")
    again: Served | None = None
    try:
        with grpc.insecure_channel(served.address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            message = agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=20)
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
        assert len(site["rounds"]) == 20 and "shutdown" in site
    finally:
        agent.stop()
        stop(again or served)


def test_stop_training_stops_the_agent_run_client_too(
    plane: ControlPlaneThread, site: AgentProcess, demo_data: list[str]
) -> None:
    job = plane.create(agent_job(["mine.pt", demo_data[1]], ["site-a", ""], rounds=1000))
    plane.start(job.id)
    wait_for(lambda: "1" in site_rounds(plane, job.id), 120, "round 1 at the site")
    pid = site_client_pid(site.root)
    plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job.id), timeout=60)
    stopped = plane.get(job.id)
    assert stopped.state == job_pb2.JOB_STATE_CANCELLED
    # StopTraining returns once every process is gone, the site's included (it may have ended cleanly on its own
    # when the FL server went away first).
    assert stopped.clients[0].state in (job_pb2.CLIENT_STATE_STOPPED, job_pb2.CLIENT_STATE_FINISHED)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_fl_traffic_uses_tls_when_the_control_plane_has_a_certificate(
    tmp_path: Path, site_root: Path, demo_data: list[str]
) -> None:
    pki = issue_pki(tmp_path, ["127.0.0.1"])
    # The chain (certificate, then its CA) lets the control plane's own local clients verify the FL server too.
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.chain, pki.key))
    agent = start_agent(plane.address, "site-a", site_root, "--tls-ca", str(pki.ca))
    try:
        with grpc.secure_channel(plane.address, grpc.ssl_channel_credentials(pki.ca.read_bytes())) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            message = agent_job(["mine.pt", demo_data[1]], ["site-a", ""])
            job = jobs.CreateJob(job_service_pb2.CreateJobRequest(job=message), timeout=10).job
            training = training_grpc.TrainingServiceStub(channel)
            training.StartTraining(training_pb.StartTrainingRequest(job_id=job.id), timeout=60)
            request = training_pb.StreamMetricsRequest(job_id=job.id)
            events = [r.event for r in training.StreamMetrics(request, timeout=180)]
            done = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), timeout=10).job
        assert events[-1].job_state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
        server_log = (tmp_path / "florist" / "jobs" / job.id / "server.log").read_text()
        assert "SSL is enabled" in server_log  # and clients could only join it over TLS
    finally:
        agent.stop()
        plane.stop(1.0)
