"""The dashboard in a real browser: Debian's Chromium driven by playwright-core (clients/web/test/*.mjs) against an
in-process control plane. A job is followed from its creation to FINISHED_SUCCESSFULLY in the page, a viewer
watches without any button that mutates, and the tests take the README's screenshots (docs/screenshots on request)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from florist_grpc.net import free_service_port
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import ControlPlaneThread
from tests.e2e.sites import start_agent
from tests.web.conftest import TOKENS, Dashboard, bearer, write_auth_file
from tests.web.scenario import WEB, needs_browser

# The README's screenshots are refreshed on request (`FLORIST_SCREENSHOTS=docs/screenshots`); an ordinary run writes
# them under its tmp_path, so running the tests leaves the checkout as it was.
SCREENSHOTS_REQUESTED = os.environ.get("FLORIST_SCREENSHOTS", "")

pytestmark = needs_browser


def run_scenario(name: str, timeout: float, **env: str) -> dict[str, Any]:
    """Run clients/web/test/NAME and return the JSON it prints; its own error output if it fails."""
    done = subprocess.run(
        ["node", str(WEB / "test" / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr}\n{done.stdout}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_viewer_watches_without_buttons_that_mutate_and_the_token_leaves_the_address(dashboard: Dashboard) -> None:
    job = simulation.create_running(dashboard.plane.plane, n_clients=2)
    simulation.play_rounds(job, 3)
    simulation.finish(dashboard.plane.plane, job)
    result = run_scenario("viewer.mjs", 120, DASHBOARD_URL=dashboard.url, TOKEN=TOKENS["viewer"], JOB_ID=job.job_id)

    assert result["jobPage"] == {
        "address": f"{dashboard.url}/#/jobs/{job.job_id}",  # the token is gone from the address bar
        "stored": TOKENS["viewer"],
        "mutatingButtons": 0,
        "points": 3,
    }
    assert result["jobsPage"] == {"listedId": job.job_id[:8], "mutatingButtons": 0}
    assert result["refused"]["status"] == 403
    assert result["refused"]["body"]["code"] == "permission_denied"
    assert result["afterReload"] == f"{dashboard.url}/#/jobs"
    assert result["otherTabStored"] is None  # the token belongs to the tab that received it
    assert result["pastedRole"] == "viewer"
    assert result["errors"] == []


@pytest.fixture
def training_dashboard(tmp_path: Path, demo_data: list[str]) -> Iterator[Dashboard]:
    """A plane that trains for real (launcher pool on), with an agent connected for the agents page."""
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", auth_file=write_auth_file(tmp_path / "tokens"), http_port=free_service_port()
    )
    site = tmp_path / "site-a"
    site.mkdir()
    agent = start_agent(plane.address, "site-a", site, "--no-launcher-pool", token=TOKENS["agent"])
    yield Dashboard(plane)
    agent.stop()
    plane.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_job_created_in_the_page_is_followed_live_to_its_end(
    training_dashboard: Dashboard, demo_data: list[str], tmp_path: Path
) -> None:
    rounds = 3
    body = {
        "job": {
            "model": "MLP",
            "strategy": "FEDAVG",
            "optimizer": "SGD",
            "client_type": "FEDAVG",
            "server_config": {"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1},
            "clients": [{"data_path": path} for path in demo_data],
        }
    }
    screenshots = Path(SCREENSHOTS_REQUESTED).resolve() if SCREENSHOTS_REQUESTED else tmp_path / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    result = run_scenario(
        "live-job.mjs",
        360,
        DASHBOARD_URL=training_dashboard.url,
        TOKEN=TOKENS["admin"],
        JOB_JSON=json.dumps(body),
        ROUNDS=str(rounds),
        SCREENSHOTS=str(screenshots),
        DOWNLOADS=str(downloads),
        AGENT="site-a",
    )
    plane = training_dashboard.plane
    job_id = result["jobId"]
    job = plane.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), metadata=bearer("admin")).job
    assert job.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    assert result["addressAfterLink"] == f"{training_dashboard.url}/#/jobs"
    assert result["listedId"] == job_id[:8]
    # The page drew the curve empty, then grew as rounds ended, while the job ran. A source's reports read together
    # (metrics/throttle.py: a 2-client job's every 30 ms) may add two rounds' points at once, never take one away.
    points = result["curvePoints"]
    assert points[0] == 0 and points[-1] == rounds and points == sorted(set(points)), points
    assert len(points) >= 3, points  # a point drawn live, before the last round's
    for metric in ("val-loss", "val-accuracy"):
        assert result["curves"][metric] == {"aggregated": rounds, "client0": rounds, "client1": rounds}, metric
    assert result["curves"]["train-loss"]["aggregated"] == rounds
    assert result["clientStates"] == ["FINISHED", "FINISHED"]
    assert "[SUMMARY]" in result["logs"]["server"]  # Flower's end-of-run summary, in the FL server's log
    assert "[SUMMARY]" not in result["logs"]["client0"]
    assert 2 <= result["maxOpenStreams"] <= 3
    # The model saved by the page is the one the server announces, byte for byte.
    artifact = next(
        iter(plane.training.DownloadModel(training_pb.DownloadModelRequest(job_id=job_id), metadata=bearer("admin")))
    ).artifact
    saved = Path(result["modelPath"]).read_bytes()
    assert hashlib.sha256(saved).hexdigest() == artifact.sha256 == result["shownSha256"]
    assert len(saved) == artifact.size_bytes
    for page, widths in result["widths"].items():
        assert widths == {"desktop": 1280, "phone": 390}, page  # nothing sticks out sideways
    for page in ("jobs", "job", "catalog", "agents"):
        for size in ("desktop", "phone"):
            assert (screenshots / f"{page}-{size}.png").stat().st_size > 0
    assert result["errors"] == []
    # The second job went through "Create and start" and was deleted from the list.
    with pytest.raises(grpc.RpcError) as deleted:
        plane.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=result["secondJobId"]), metadata=bearer("admin"))
    assert deleted.value.code() == grpc.StatusCode.NOT_FOUND
