"""What `train watch` shows before round 1, for a job that is never started, and in its live view."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from click.testing import Result
from rich.console import Console

from florist_grpc.cli.watch import rounds_view, status_view
from florist_grpc.domain.model import JobState
from florist_grpc.progress import JobProgress
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.simulation import create_running, play_rounds
from tests.cli.conftest import Invoke
from tests.helpers import PlaneThread, job_message, wait_for


def test_a_job_never_started_is_said_to_be_waiting_and_its_end_is_shown(cli: Invoke, plane: PlaneThread) -> None:
    job = plane.create(job_message(["/d/c0.pt", "/d/c1.pt"]))
    outcome: list[Result] = []
    watcher = threading.Thread(target=lambda: outcome.append(cli("train", "watch", job.id, "--address", plane.address)))
    watcher.start()
    wait_for(lambda: plane.plane.hub.subscriber_count(job.id) == 1, 30, "the watch to subscribe")
    ended = plane.plane.store.transition(job.id, {JobState.NOT_STARTED}, JobState.CANCELLED, datetime.now(UTC))
    assert ended is not None
    plane.plane.hub.publish_threadsafe([ended])
    watcher.join(30)
    [result] = outcome
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"watching job {job.id} (NOT_STARTED, 3 rounds, 2 clients)"
    assert lines[1] == "waiting for the job has not been started (florist-grpc train start ID)"
    assert "job is CANCELLED" in result.stdout and "final state: JOB_STATE_CANCELLED" in result.stdout


def job_last_sequence(plane: PlaneThread, job_id: str) -> int:
    job = plane.plane.store.get_job(job_id)
    assert job is not None
    return job.last_sequence


def test_the_live_view_shows_rounds_with_a_bar_elapsed_eta_and_each_client(plane: PlaneThread) -> None:
    simulated = create_running(plane.plane, 2)
    play_rounds(simulated, 2)

    def all_reported() -> bool:
        job = plane.plane.store.get_job(simulated.job_id)
        assert job is not None
        server_done = "fit_end" in job.server_metrics
        return server_done and all("shutdown" in c.metrics for c in job.clients)

    wait_for(all_reported, 30, "every report to be stored")
    job = plane.get(simulated.job_id)
    progress = JobProgress.for_job(job)
    stream = plane.training.StreamMetrics(pb.StreamMetricsRequest(job_id=simulated.job_id), timeout=30)
    try:
        for response in stream:  # the job stays IN_PROGRESS: read what is there, then hang up
            progress.apply(response.event)
            if response.event.sequence == job_last_sequence(plane, simulated.job_id):
                break
    finally:
        stream.cancel()
    console = Console(record=True, width=160)
    console.print(status_view(progress, simulated.job_id, time.time()))
    console.print(rounds_view(progress))
    text = console.export_text()
    # N of "round k/N" is the num_rounds the server reported at fit_end (2 here, of the 3 configured).
    assert f"job {simulated.job_id}" in text and "IN_PROGRESS" in text and "round 2/2" in text
    assert "━" in text  # the bar
    assert "elapsed" in text and "ETA" in text
    assert "done" in text  # the simulated clients reported shutdown
    assert "CLIENT 0 ACC" in text and job.state == job_pb2.JOB_STATE_IN_PROGRESS
