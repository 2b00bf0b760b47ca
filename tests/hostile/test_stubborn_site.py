"""A site that stops answering never wedges a job (issue 18, item 1).

The fake site here speaks the real agent protocol (tests/e2e/sites.py StubbornSite): it accepts a launch and
ignores every stop_client. StopTraining answers within its bound all the same, the job is CANCELLED and lists the
stop its site has not confirmed (ClientInfo.stop_confirmed false), which is retried in the background -- after the
job is deleted, and after a restart -- until the site confirms it. A site that falls silent past its heartbeat
bound shows as away in ListAgents, and its client is handled by the away grace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from florist_grpc.cli import app
from florist_grpc.launch.probe import probe_files
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.e2e.sites import StubbornSite, list_agents
from tests.helpers import TERMINAL, job_message, no_fl_process_left, short_timeouts, wait_for

STOP_GRACE = 1.0
# What StopTraining may take beyond the stop grace: the local processes' SIGTERM and exits, the store, gRPC.
MARGIN = 3.0


@pytest.fixture
def summary(demo_data: list[str]) -> dict[str, Any]:
    """What a real probe says of the data file the stubborn site claims to hold."""
    return probe_files([(demo_data[1], "")], 60)[0]


def plane_in(data_dir: Path, **timeouts: float) -> ControlPlaneThread:
    settings = {"process_stop_grace_seconds": STOP_GRACE, **timeouts}
    return ControlPlaneThread.in_dir(data_dir, timeouts=short_timeouts(**settings))


@pytest.fixture
def stubborn_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    running = plane_in(tmp_path / "florist")
    yield running
    running.stop()


def started_with_a_stubborn_client(plane: ControlPlaneThread, demo_data: list[str], site: StubbornSite) -> Any:
    """A job of a local client and one at the stubborn site, started: its FL server waits for the second client."""
    job = job_message([demo_data[0], "mine.pt"], rounds=50, client_wait_seconds=600)
    job.clients[1].agent = site.name
    created = plane.create(job)
    plane.start(created.id)
    return plane.get(created.id)


def stop(plane: ControlPlaneThread, job_id: str) -> tuple[job_pb2.Job, float]:
    began = time.monotonic()
    answer = plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job_id), timeout=120)
    return answer.job, time.monotonic() - began


def test_stop_training_answers_within_its_bound_while_a_site_ignores_its_stop_which_is_retried_until_confirmed(
    stubborn_plane: ControlPlaneThread, demo_data: list[str], summary: dict[str, Any]
) -> None:
    site = StubbornSite(stubborn_plane.channel, "site-x", summary)
    try:
        job = started_with_a_stubborn_client(stubborn_plane, demo_data, site)
        stubborn = job.clients[1].uuid
        stopped, took = stop(stubborn_plane, job.id)
        assert took < STOP_GRACE + MARGIN, f"StopTraining took {took:.1f}s"
        assert stopped.state == job_pb2.JOB_STATE_CANCELLED
        assert [(c.state, c.stop_confirmed) for c in stopped.clients] == [
            (job_pb2.CLIENT_STATE_STOPPED, True),  # local: its exit was seen
            (job_pb2.CLIENT_STATE_STOPPED, False),  # the site has not confirmed it
        ]
        assert stubborn_plane.plane.store.stops.pending()[0].client_uuid == stubborn
        shown = CliRunner().invoke(app, ["job", "get", job.id, "--address", stubborn_plane.address])
        assert "CLIENT_STATE_STOPPED  (its stop is not confirmed by agent site-x yet" in shown.stdout, shown.stdout
        # Retried in the background: the site keeps getting the stop after the answer.
        while not site.stops.empty():
            site.stops.get()
        assert site.next_stop(STOP_GRACE * 3 + 2) == stubborn
        site.confirm(stubborn)
        wait_for(lambda: stubborn_plane.get(job.id).clients[1].stop_confirmed, 10, "the stop to be confirmed")
        assert stubborn_plane.plane.store.stops.pending() == []
        no_fl_process_left()
    finally:
        site.close()


def test_a_stop_does_not_wait_for_a_site_that_never_answers_a_launch_and_that_site_is_told_to_stop_it(
    tmp_path: Path, demo_data: list[str], summary: dict[str, Any]
) -> None:
    # The launch would be waited for agent_call_seconds; the stop answers long before.
    plane = plane_in(tmp_path / "florist", agent_call_seconds=60.0)
    site = StubbornSite(plane.channel, "site-x", summary, answer_launches=False)
    try:
        job = job_message([demo_data[0], "mine.pt"], rounds=50, client_wait_seconds=600)
        job.clients[1].agent = site.name
        created = plane.create(job)
        with ThreadPoolExecutor(1) as executor:
            starting = executor.submit(plane.start, created.id)
            launched = site.launched.get(timeout=60)
            stopped, took = stop(plane, created.id)
            assert took < STOP_GRACE + MARGIN, f"StopTraining took {took:.1f}s"
            assert stopped.state == job_pb2.JOB_STATE_CANCELLED
            with pytest.raises(grpc.RpcError) as raised:
                starting.result(60)
            assert raised.value.code() == grpc.StatusCode.ABORTED
        assert site.next_stop(10) == launched  # it might start it yet: it must stop it
        no_fl_process_left()
    finally:
        site.close()
        plane.stop()


def test_a_cancelled_job_with_an_unconfirmed_stop_may_be_deleted_and_its_stop_outlives_it_and_a_restart(
    tmp_path: Path, demo_data: list[str], summary: dict[str, Any]
) -> None:
    plane = plane_in(tmp_path / "florist")
    site = StubbornSite(plane.channel, "site-x", summary)
    try:
        job = started_with_a_stubborn_client(plane, demo_data, site)
        stubborn = job.clients[1].uuid
        stopped, _ = stop(plane, job.id)
        assert not stopped.clients[1].stop_confirmed
        plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job.id), timeout=30)
        while not site.stops.empty():
            site.stops.get()
        assert site.next_stop(STOP_GRACE * 3 + 2) == stubborn  # the job is gone, its client's stop is not
    finally:
        site.close()
        plane.stop()
    again = plane_in(tmp_path / "florist")
    try:
        # The site comes back still running the client: the restarted control plane stops it at once.
        back = StubbornSite(again.channel, "site-x", summary, running=[stubborn])
        assert back.next_stop(10) == stubborn
        back.confirm(stubborn)
        wait_for(lambda: not again.plane.store.stops.pending(), 10, "the stop to be settled")
        back.close()
    finally:
        again.stop()


def test_a_site_silent_past_its_heartbeat_bound_is_shown_away_and_its_client_is_lost_after_the_away_grace(
    tmp_path: Path, demo_data: list[str], summary: dict[str, Any]
) -> None:
    plane = plane_in(tmp_path / "florist", agent_silence_seconds=1.0, agent_away_grace_seconds=2.0)
    site = StubbornSite(plane.channel, "site-x", summary, heartbeat_seconds=0.2)
    try:
        job = started_with_a_stubborn_client(plane, demo_data, site)
        (listed,) = list_agents(plane)
        assert listed.connected
        site.fall_silent()
        wait_for(lambda: not list_agents(plane)[0].connected, 5, "the silent agent to be shown away")
        ended = plane.wait_state(job.id, TERMINAL, 30)
        assert ended.state == job_pb2.JOB_STATE_FINISHED_WITH_ERROR
        assert "agent site-x stayed disconnected for more than 2s" in ended.error_message
        no_fl_process_left()
    finally:
        site.close()
        plane.stop()
