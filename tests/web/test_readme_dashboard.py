"""The README's Dashboard block, run as written: serve with the dashboard, a link per token that logs a browser tab
in (the viewer's opens a viewer's page in Chromium), and the API answering curl."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from florist_grpc.net import free_service_port
from tests.e2e.test_readme_walkthrough import section_blocks, stop_everything_started_in
from tests.web.scenario import CHROMIUM, WEB

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_the_readme_dashboard_block_serves_the_page_its_links_log_in_and_curl_reaches_the_api(tmp_path: Path) -> None:
    (block,) = section_blocks("Dashboard")
    # As the walk-through does: the repository's .venv, in a directory of its own; the only change to the text is
    # the ports (8080 and the gRPC default become free ones).
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(ROOT / ".venv")
    http_port, grpc_port = free_service_port(), free_service_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLORIST_")}
    env |= {"FLORIST_PORT": str(grpc_port), "FLORIST_ADDRESS": f"localhost:{grpc_port}"}
    script = block.replace(":8080", f":{http_port}").replace("--http-port 8080", f"--http-port {http_port}")
    out, err = tmp_path / "out", tmp_path / "err"
    try:
        # Into files, not pipes: the serve the block leaves running holds its output open.
        with out.open("w") as stdout, err.open("w") as stderr:
            code = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=workdir,
                env=env,
                stdout=stdout,
                stderr=stderr,
                timeout=120,
                check=False,
                start_new_session=True,
            ).returncode
        printed = out.read_text()
        assert code == 0, printed[-4000:] + err.read_text()[-4000:]
        links = dict(re.findall(r"^(you|collaborator): +(http://\S+)$", printed, re.M))
        assert '"MLP"' in printed  # GetCatalog's JSON, through curl
        assert set(links) == {"you", "collaborator"}
        if CHROMIUM.exists() and (WEB / "node_modules" / "playwright-core").exists():
            viewer = links["collaborator"]
            opened = subprocess.run(
                ["node", str(WEB / "test" / "open-link.mjs")],
                env={**os.environ, "LINK": viewer},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert opened.returncode == 0, opened.stderr
            page = json.loads(opened.stdout.strip().splitlines()[-1])
            assert page == {"role": "viewer", "address": f"http://127.0.0.1:{http_port}/#/jobs"}
    finally:
        stop_everything_started_in(workdir)
