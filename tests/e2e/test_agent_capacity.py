"""An agent's --max-clients: told in its hello, shown by ListAgents, and applied by the queue. A job with more
clients on the agent than it may ever run is refused before the site is asked anything; jobs beyond its free
capacity wait in the queue and start as its clients end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import create_running
from tests.e2e.sites import AgentProcess, agent_job, list_agents, sha, start_agent
from tests.helpers import TERMINAL


@pytest.fixture
def small_site(plane: ControlPlaneThread, site_root: Path) -> Iterator[AgentProcess]:
    agent = start_agent(plane.address, "site-a", site_root, "--max-clients", "1")
    yield agent
    assert agent.stop() == 0


def test_the_agents_max_clients_is_listed_and_a_job_beyond_it_is_refused(
    plane: ControlPlaneThread, small_site: AgentProcess
) -> None:
    (info,) = list_agents(plane)
    assert (info.name, info.max_clients) == ("site-a", 1)
    job = plane.create(agent_job(["mine.pt", "mine.pt"], ["site-a", "site-a"]))
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "agent site-a runs at most 1 client(s) (--max-clients); this job has 2 there" in raised.value.details()
    assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED  # refused, not queued


@pytest.mark.slow
def test_a_job_waits_for_the_agents_capacity_then_trains(plane: ControlPlaneThread, small_site: AgentProcess) -> None:
    first = plane.create(agent_job(["mine.pt"], ["site-a"], rounds=1))
    second = plane.create(agent_job(["mine.pt"], ["site-a"], rounds=1))
    assert not plane.start(first.id).queued
    assert plane.start(second.id).queued
    queued = next(e for e in plane.events(second.id, timeout=30) if e.job_state == job_pb2.JOB_STATE_QUEUED)
    assert dict(queued.patch)["reason"] == "agent site-a runs 1 of its 1 client(s) (--max-clients)"
    done = plane.wait_state(first.id, TERMINAL, 180)
    finished = plane.wait_state(second.id, TERMINAL, 180)
    assert (done.state, finished.state) == (job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY,) * 2, finished.error_message
    assert finished.start_time.ToDatetime() >= done.end_time.ToDatetime()


def test_a_queued_job_whose_agent_left_the_auth_file_ends_saying_so(tmp_path: Path, site_root: Path) -> None:
    """The auth file changes while the job waits (a restart reads it again): its site may no longer run it."""
    tokens = tmp_path / "tokens"
    operator, agent = f"operator {sha('op')} ann\n", f"agent {sha('site')} site-a\n"
    tokens.write_text(operator + agent)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens, max_running_jobs=1)
    port, auth = plane.plane.port, (("authorization", "Bearer op"),)
    site = start_agent(plane.address, "site-a", site_root, token="site")
    try:
        create_running(plane.plane, n_clients=1)  # holds the one slot
        request = job_pb.CreateJobRequest(job=agent_job(["mine.pt"], ["site-a"], rounds=1))
        job = plane.jobs.CreateJob(request, timeout=10, metadata=auth).job
        start = training_pb.StartTrainingRequest(job_id=job.id)
        assert plane.training.StartTraining(start, timeout=60, metadata=auth).queued
        plane.stop()
        tokens.write_text(operator)
        plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens, max_running_jobs=1, port=port)
        ended = wait_for(
            lambda: (j := plane.plane.store.get_job(job.id)) is not None and j.state.terminal and j, 60, "the job"
        )
        assert ended.error_message == (
            "it can never start: job.clients[0]: agent site-a has no token in the auth file: it cannot run clients"
        )
    finally:
        site.stop()
        plane.stop()
