"""What `train watch` shows before round 1, for a job that is never started, and in its live view."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import UTC, datetime

from click.testing import Result
from rich.console import Console

from florist_grpc.cli.watch import duration, rounds_view, show_progress, status_view
from florist_grpc.domain.model import JobState
from florist_grpc.progress import JobProgress
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.cli.conftest import Invoke, play_diverged_rounds
from tests.helpers import job_message, wait_for


def test_a_job_never_started_is_said_to_be_waiting_and_its_end_is_shown(cli: Invoke, plane: ControlPlaneThread) -> None:
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


def job_last_sequence(plane: ControlPlaneThread, job_id: str) -> int:
    job = plane.plane.store.get_job(job_id)
    assert job is not None
    return job.last_sequence


def test_the_live_view_shows_rounds_with_a_bar_elapsed_eta_and_each_client(plane: ControlPlaneThread) -> None:
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


def finished_events(
    plane: ControlPlaneThread, rounds: int, diverged: bool = False
) -> tuple[job_pb2.Job, list[pb.MetricsEvent]]:
    simulated = create_running(plane.plane, 2)
    play_diverged_rounds(simulated, rounds) if diverged else play_rounds(simulated, rounds)
    finish(plane.plane, simulated)
    job = plane.get(simulated.job_id)
    return job, plane.events(job.id)


def test_each_round_line_is_printed_with_a_bar_that_already_counts_it(plane: ControlPlaneThread) -> None:
    job, events = finished_events(plane, 3)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, color_system=None, width=150)
    show_progress(terminal, JobProgress.for_job(job), job.id, events, live_view=True)
    lines = screen.getvalue().splitlines()
    told = [i for i, line in enumerate(lines) if re.search(r"round \d/3: val loss", line)]
    assert len(told) == 3
    for i in told:
        announced = int(re.search(r"round (\d)/3: val loss", lines[i]).group(1))  # type: ignore[union-attr]
        # The live status drawn with that line, right under it, counts it (one event may finish several rounds).
        bar = next(line for line in lines[i + 1 :] if "elapsed" in line)
        shown = int(re.search(r"round (\d)/3", bar).group(1))  # type: ignore[union-attr]
        assert shown >= announced, "\n".join(lines)


def test_a_diverged_job_shows_nan_and_inf_in_the_live_view_and_the_final_table(
    cli: Invoke, plane: ControlPlaneThread
) -> None:
    job, events = finished_events(plane, 2, diverged=True)
    progress = JobProgress.for_job(job)
    for event in events:
        progress.apply(event)
    console = Console(record=True, width=160)
    console.print(status_view(progress, job.id, time.time()))
    live = console.export_text()
    client_rows = [line.split() for line in live.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [row[-2:] for row in client_rows] == [["NaN", "0.1000"], ["NaN", "0.1000"]], live

    result = cli("train", "watch", job.id, "--address", plane.address)
    assert "round 1/2: val loss NaN, val accuracy 0.1000" in result.stdout
    table = result.stdout.split("ROUND", 1)[1].splitlines()[1:3]
    # ROUND, VAL LOSS, VAL ACCURACY, TRAIN LOSS, CLIENT 0 ACC, CLIENT 1 ACC
    assert [row.split() for row in table] == [[str(n), "NaN", "0.1000", "inf", "0.1000", "0.1000"] for n in (1, 2)]


def test_durations_under_a_minute_show_tenths_of_a_second() -> None:
    assert [duration(s) for s in (None, 0.04, 0.4, 59.94, 60, 3725)] == [
        "-",
        "0.0 s",
        "0.4 s",
        "59.9 s",
        "0:01:00",
        "1:02:05",
    ]


def test_a_short_job_is_not_said_to_take_no_time(cli: Invoke, plane: ControlPlaneThread) -> None:
    job, _ = finished_events(plane, 1)
    result = cli("train", "watch", job.id, "--address", plane.address)
    assert re.search(r"final state: JOB_STATE_FINISHED_SUCCESSFULLY in \d+\.\d s\n", result.stdout), result.stdout
