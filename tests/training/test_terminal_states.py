"""A job in a terminal state has every client in a terminal state, with a true reason (issue 18, item 5).

Real FL processes: a launcher pool killed with SIGKILL mid-training, and a start that fails after its FL server and
first client were launched (as when an agent refuses the second client's launch).
"""

from __future__ import annotations

import os
import signal

import grpc
import psutil
import pytest

from florist_grpc.domain.errors import Unavailable
from florist_grpc.jobs.starting import Start
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import TERMINAL, job_message, no_fl_process_left, wait_for

pytestmark = pytest.mark.slow

CLIENT_TERMINAL = {job_pb2.CLIENT_STATE_FINISHED, job_pb2.CLIENT_STATE_FAILED, job_pb2.CLIENT_STATE_STOPPED}


def server_round(plane: ControlPlaneThread, job_id: str, n: int) -> bool:
    metrics = plane.get(job_id).server_metrics
    return "rounds" in metrics and str(n) in metrics["rounds"]


def test_a_job_whose_launcher_pool_was_killed_finishes_with_its_clients_finished(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    pool = plane.plane.launcher_pool
    assert pool is not None and pool.wait_ready(120)
    job = plane.create(job_message(demo_data, rounds=4))
    plane.start(job.id)
    stored = plane.plane.store.get_job(job.id)
    pool_pid = pool.pid
    assert stored is not None and pool_pid is not None
    forked = {p.pid for p in psutil.Process(pool_pid).children()}
    assert {c.process.pid for c in stored.clients} <= forked  # its FL processes are the pool's children
    wait_for(lambda: server_round(plane, job.id, 1), 120, "round 1")
    os.kill(pool_pid, signal.SIGKILL)  # the FL processes live on (own sessions); their reaper is gone
    done = plane.wait_state(job.id, TERMINAL, 300)
    assert done.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, done.error_message
    for client in done.clients:
        assert client.state == job_pb2.CLIENT_STATE_FINISHED, client.error_message
        assert "restarting" not in client.error_message  # no control-plane restart happened
    no_fl_process_left()


def test_a_start_that_fails_after_launching_some_clients_leaves_none_running(
    plane: ControlPlaneThread, demo_data: list[str]
) -> None:
    async def refuse_the_second_client(start: Start, step: str) -> None:
        if step == "client0 launched":  # what an agent refusing client 1's launch raises
            raise Unavailable("agent site-b did not answer the launch of client 1", reason="AGENT_UNAVAILABLE")

    plane.plane.trainer.starts.step_hook = refuse_the_second_client
    job = plane.create(job_message(demo_data, rounds=2))
    with pytest.raises(grpc.RpcError) as raised:
        plane.start(job.id)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    ended = plane.wait_state(job.id, TERMINAL, 60)
    assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
    assert "site-b" in ended.error_message
    states = [c.state for c in ended.clients]
    assert all(s in CLIENT_TERMINAL for s in states), states
    assert ended.clients[0].state == job_pb2.CLIENT_STATE_STOPPED  # launched, then stopped with the job
    assert ended.clients[1].state == job_pb2.CLIENT_STATE_STOPPED
    assert ended.clients[1].error_message == "not launched: the job ended FINISHED_WITH_ERROR before it was"
    no_fl_process_left()
