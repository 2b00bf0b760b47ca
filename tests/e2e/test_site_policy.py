"""A site's policy (`agent --allow-project`, `--allow-model`): told in the agent's hello, shown by ListAgents and
`agents`, and applied by StartTraining before anything launches; a queued job whose site narrowed its policy
meanwhile, or whose site's token left the auth file, ends when it would leave the queue. Real agent processes
against an in-process control plane."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread, wait_for
from florist_grpc.testing.simulation import create_running
from tests.e2e.sites import BIN, agent_job, list_agents, sha, start_agent


def _refusal(plane: ControlPlaneThread, job_id: str) -> tuple[str, str, dict[str, str]]:
    """StartTraining's refusal: its details, ErrorInfo reason and field violations."""
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job_id)
    error = raised.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", {}
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields.update({v.field: v.description for v in bad.field_violations})
    return error.details(), reason, fields


def test_a_job_of_a_project_the_site_does_not_allow_is_refused_before_launch(
    plane: ControlPlaneThread, site_root: Path
) -> None:
    agent = start_agent(plane.address, "site-a", site_root, "--allow-project", "vision", "--allow-project", "speech")
    try:
        (info,) = list_agents(plane)
        assert (list(info.allowed_projects), list(info.allowed_models)) == (["vision", "speech"], [])
        job = plane.create(agent_job(["mine.pt"], ["site-a"]))  # project "default" (no auth file)
        details, reason, fields = _refusal(plane, job.id)
        rule = "agent site-a does not run jobs of project 'default' (--allow-project vision,speech)"
        assert details == f"job {job.id!r} can never start: {rule}"
        assert (reason, fields) == ("SITE_PROJECT_NOT_ALLOWED", {"job.clients[0].agent": rule})
        assert plane.get(job.id).state == job_pb2.JOB_STATE_NOT_STARTED  # refused, not queued
        audit = [json.loads(line) for line in (site_root / ".florist-agent" / "audit.jsonl").read_text().splitlines()]
        assert audit == []  # refused by the control plane: the site was asked nothing
    finally:
        assert agent.stop() == 0


def test_a_model_the_site_does_not_allow_is_refused_and_agents_shows_the_policy(
    plane: ControlPlaneThread, site_root: Path
) -> None:
    agent = start_agent(plane.address, "site-a", site_root, "--allow-model", "MNIST_CNN", "--max-clients", "3")
    try:
        job = plane.create(agent_job(["mine.pt"], ["site-a"]))  # an MLP
        details, reason, fields = _refusal(plane, job.id)
        rule = "agent site-a does not run model 'MLP' (--allow-model MNIST_CNN)"
        assert (details.endswith(rule), reason, fields) == (
            True,
            "SITE_MODEL_NOT_ALLOWED",
            {"job.clients[0].agent": rule},
        )
        shown = subprocess.run(
            [str(BIN / "florist-grpc"), "agents", "--address", plane.address],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "200", "PATH": str(BIN)},
        )
        assert shown.returncode == 0, shown.stderr
        assert "projects *; models MNIST_CNN; max clients 3" in shown.stdout
    finally:
        assert agent.stop() == 0


def test_a_queued_job_whose_site_narrowed_its_policy_ends_at_dequeue(tmp_path: Path, site_root: Path) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", max_running_jobs=1)
    agent = start_agent(plane.address, "site-a", site_root)
    try:
        create_running(plane.plane, n_clients=1)  # holds the one slot
        job = plane.create(agent_job(["mine.pt"], ["site-a"], rounds=1))
        assert plane.start(job.id).queued
        assert agent.stop() == 0
        agent = start_agent(
            plane.address, "site-a", site_root, "--allow-project", "other"
        )  # its connect wakes the queue
        ended = wait_for(lambda: (j := plane.get(job.id)).state != job_pb2.JOB_STATE_QUEUED and j, 60, "the job to end")
        assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
        assert ended.error_message == (
            "it can never start: agent site-a does not run jobs of project 'default' (--allow-project other)"
        )
    finally:
        agent.stop()
        plane.stop()


def test_a_queued_job_whose_sites_token_left_the_auth_file_ends_without_a_restart(
    tmp_path: Path, site_root: Path
) -> None:
    tokens = tmp_path / "tokens"
    operator, agent_line = f"operator {sha('op')} ann\n", f"agent {sha('site')} site-a\n"
    tokens.write_text(operator + agent_line)
    fast = replace(TEST_TIMEOUTS, file_reload_seconds=0.1)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=tokens, max_running_jobs=1, timeouts=fast)
    auth = (("authorization", "Bearer op"),)
    agent = start_agent(plane.address, "site-a", site_root, token="site")
    try:
        create_running(plane.plane, n_clients=1)  # holds the one slot
        request = job_pb.CreateJobRequest(job=agent_job(["mine.pt"], ["site-a"], rounds=1))
        job = plane.jobs.CreateJob(request, timeout=10, metadata=auth).job
        start = training_pb.StartTrainingRequest(job_id=job.id)
        assert plane.training.StartTraining(start, timeout=60, metadata=auth).queued
        tokens.write_text(operator)  # the site's token is removed: its session ends, and the queue looks again
        ended = wait_for(
            lambda: (j := plane.plane.store.get_job(job.id)) is not None and j.state.terminal and j, 30, "the job"
        )
        assert ended.error_message == (
            "it can never start: job.clients[0]: agent site-a has no token in the auth file: it cannot run clients"
        )
        assert agent.process.wait(30) == 2  # refused, as the agent is told to when its token is gone
    finally:
        agent.stop()
        plane.stop()
