"""A site that stops answering, beside a healthy real agent (issue 18, item 1): the FL server's failure ends the
job at once, whatever the silent site's client does; the healthy site's stop is confirmed, the other one's is
listed unconfirmed (and retried in the background); the ended job can be deleted."""

from __future__ import annotations

import time

import grpc
import pytest

from florist_grpc.launch.probe import probe_files
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread, wait_for
from tests.e2e.sites import AgentProcess, StubbornSite, agent_job
from tests.helpers import TERMINAL, no_fl_process_left

CLIENT_WAIT = 5.0  # how long the FL server waits for its two clients (one never comes)


@pytest.mark.slow
def test_an_fl_server_that_failed_ends_its_job_at_once_while_a_site_ignores_its_stop(
    plane: ControlPlaneThread, site: AgentProcess, demo_data: list[str]
) -> None:
    stubborn = StubbornSite(plane.channel, "site-x", probe_files([(demo_data[1], "")], 60)[0])
    try:
        job = agent_job(["mine.pt", "mine.pt"], ["site-a", "site-x"])
        job.server_config["client_wait_seconds"] = CLIENT_WAIT
        created = plane.create(job)
        began = time.monotonic()
        plane.start(created.id)
        ended = plane.wait_state(created.id, TERMINAL, 120)
        took = time.monotonic() - began
        # The server gives up after CLIENT_WAIT; then the job waits on sites for the stop grace at most.
        assert took < CLIENT_WAIT + TEST_TIMEOUTS.process_stop_grace_seconds + 15, f"the job ended after {took:.1f}s"
        assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
        assert ended.error_message.startswith("FL server"), ended.error_message
        healthy, silent = ended.clients
        assert healthy.state == job_pb2.CLIENT_STATE_STOPPED
        assert silent.state == job_pb2.CLIENT_STATE_STOPPED and not silent.stop_confirmed

        # The healthy site confirms within the stop grace on a quiet machine; on a loaded one its client's exit
        # may come after it, and then the background retry settles the stop as confirmed when it arrives.
        def healthy_confirmed() -> job_pb2.Job | None:
            job = plane.get(created.id)
            return job if job.clients[0].stop_confirmed else None

        grace = TEST_TIMEOUTS.process_stop_grace_seconds
        settled = wait_for(healthy_confirmed, grace * 5, "the healthy site's stop to be confirmed")
        assert not settled.clients[1].stop_confirmed  # the silent site's stays unconfirmed
        with pytest.raises(grpc.RpcError) as raised:  # nothing left to stop: answered at once
            plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=created.id), timeout=10)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=created.id), timeout=10)
        assert stubborn.next_stop(TEST_TIMEOUTS.process_stop_grace_seconds * 3) == silent.uuid  # still retried
        no_fl_process_left()
    finally:
        stubborn.close()
