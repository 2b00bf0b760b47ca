"""The dashboard's jobs list is live (list-then-watch over WatchJobs): a job created, started and stopped by another
client over gRPC, and a running job's end, appear in a viewer's open page without a reload, through one stream; the
queued job's own page shows it queued and asks for no log; the viewer's page never offers a button that mutates,
and the browser API refuses the viewer's mutations anyway. Across a restart that trimmed the changes the page last
saw, the list resumes, is told OUT_OF_RANGE and lists again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_service_pb2 as job_pb
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.store.change_feed import TRIM_EVERY
from florist_grpc.store.sqlite import SqliteStore
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message
from tests.web.conftest import TOKENS, Dashboard, bearer, write_auth_file
from tests.web.scenario import Scenario, needs_browser

pytestmark = needs_browser


@pytest.fixture
def queue_dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """One running job at a time (--max-running-jobs 1), so that a started job queues without training."""
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist",
        auth_file=write_auth_file(tmp_path / "tokens"),
        http_port=free_service_port(),
        launcher_pool=False,
        max_running_jobs=1,
    )
    yield Dashboard(plane)
    plane.stop()


@pytest.mark.timeout(180)
def test_a_viewer_sees_jobs_another_client_creates_starts_and_stops_without_a_reload(
    queue_dashboard: Dashboard, demo_data: list[str]
) -> None:
    plane = queue_dashboard.plane
    admin = bearer("admin")
    running = simulation.create_running(plane.plane, n_clients=2)  # holds the one slot
    with Scenario(
        "watch-list.mjs", DASHBOARD_URL=queue_dashboard.url, TOKEN=TOKENS["viewer"], RUNNING_ID=running.job_id
    ) as page:
        page.expect("watching")
        job = plane.jobs.CreateJob(job_pb.CreateJobRequest(job=job_message(demo_data, rounds=1)), metadata=admin).job
        page.answer(job.id)
        page.expect("created")
        assert plane.training.StartTraining(training_pb.StartTrainingRequest(job_id=job.id), metadata=admin).queued
        page.answer()
        page.expect("queued")
        plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job.id), metadata=admin)
        page.answer()
        page.expect("cancelled")
        simulation.finish(plane.plane, running)
        page.answer()
        result = page.result()

    states = result["states"]
    assert states["running"]["owner"] == "\u2013"  # a simulated job has no owner (an en dash)
    for step in ("created", "queued", "cancelled"):
        # The admin token's name owns the job; its `*` projects make it the default project's.
        assert (states[step]["project"], states[step]["owner"]) == ("default", "ops"), step
    for step, seen in states.items():
        assert seen["mutatingButtons"] == 0, step
        assert seen["sameDocument"] is True, step  # every change arrived without a reload
        assert seen["openStreams"] == "1", step  # the list's one watch
    assert result["maxOpenStreams"] <= 2  # the job page's metrics, and the list's watch while it closes
    assert result["jobPage"] == {
        "project": "default",
        "owner": "ops",
        "queued": True,  # when it joined the queue
        "mutatingButtons": 0,
        "problemsShown": False,
        "logShown": False,  # a job stopped while queued never had a log: none is shown, or followed
    }
    assert result["order"] == [job.id, running.job_id]  # newest first
    for path, refused in result["refused"].items():
        assert refused == {"status": 403, "code": "permission_denied"}, path
    assert result["errors"] == []
    # The refusals changed nothing.
    assert plane.jobs.GetJob(job_pb.GetJobRequest(job_id=job.id), metadata=admin).job.id == job.id


@pytest.mark.timeout(180)
def test_after_a_restart_that_trimmed_what_the_page_saw_the_list_lists_again(tmp_path: Path) -> None:
    data_dir, store_path, http_port = tmp_path / "florist", tmp_path / "jobs.sqlite3", free_service_port()
    settings = {"auth_file": write_auth_file(tmp_path / "tokens"), "http_port": http_port, "launcher_pool": False}
    keep = 5
    plane = ControlPlaneThread.in_dir(data_dir, store=SqliteStore(store_path, keep_changes=keep), **settings)
    try:
        first = plane.jobs.CreateJob(
            job_pb.CreateJobRequest(job=job_message(["/data/a.pt"])), metadata=bearer("admin")
        ).job
        url = f"http://127.0.0.1:{http_port}"
        with Scenario(
            "relist.mjs", DASHBOARD_URL=url, TOKEN=TOKENS["viewer"], JOB_ID=first.id, JOBS=str(TRIM_EVERY + 1)
        ) as page:
            page.expect("watching")
            plane.stop()
            # While it is down: enough changes that the log is trimmed past the revision the page last saw.
            offline = SqliteStore(store_path, keep_changes=keep)
            for _ in range(TRIM_EVERY):
                offline.create_job(simulation.stored_job(["/data/a.pt"], rounds=1))
            offline.close()
            plane = ControlPlaneThread.in_dir(data_dir, store=SqliteStore(store_path, keep_changes=keep), **settings)
            page.answer()
            result = page.result(timeout=120)
    finally:
        plane.stop()

    assert result["rows"] == TRIM_EVERY + 1
    feed = result["feed"]
    # Broken, resumed from the last revision seen, refused (OUT_OF_RANGE), listed again, and watching.
    assert feed[0] == "live" and "resuming" in feed and feed[-2:] == ["listing", "live"], feed
    assert result["sameDocument"] is True
    assert result["problemsShown"] is False
    assert result["errors"] == []
