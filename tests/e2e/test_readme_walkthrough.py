"""The README's walk-through, run verbatim: the CLI section, the grpcurl cookbook against `serve --auth-file`, and
"Run a site" with a real agent, each ending in a real job."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import psutil
import pytest
from safetensors import safe_open

from florist_grpc.domain.model import JobState
from florist_grpc.net import free_service_port
from florist_grpc.store.factory import open_store
from tests.e2e.conftest import serve, stop

ROOT = Path(__file__).resolve().parents[2]


def cookbook() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- cookbook:start -->\n```sh\n(.*?)```\n<!-- cookbook:end -->", readme, re.S)
    assert block, "the README has no cookbook block"
    return block.group(1)


def test_the_cookbook_covers_every_rpc() -> None:
    from florist_grpc.api.services import FLORIST_SERVICES
    from florist_grpc.proto.florist.v1 import (
        agent_service_pb2,
        catalog_service_pb2,
        job_service_pb2,
        training_service_pb2,
    )

    text = cookbook()
    for module in (job_service_pb2, training_service_pb2, catalog_service_pb2, agent_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.full_name in FLORIST_SERVICES
            for method in service.methods:
                if method.client_streaming:  # AgentService/Connect: the agents' session, not for grpcurl
                    continue
                assert f"{service.full_name}/{method.name}" in text, method.full_name


def section_blocks(heading: str) -> list[str]:
    """The ```sh blocks of the README section `## heading`, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def walkthrough() -> str:
    """The README from serve to a site's job: the CLI section, the cookbook (its serve, then every RPC) and "Run
    a site", as one script, in the order the README says they run."""
    cli = section_blocks("From nothing to a trained job, with the CLI")
    serve_with_token, rpcs = section_blocks("grpcurl cookbook")[:2]
    assert rpcs == cookbook()
    (site,) = section_blocks("Run a site")
    return "\n".join([*cli, serve_with_token, rpcs, site])


def stop_everything_started_in(workdir: Path) -> None:
    """Whatever the script left running (serve, the agent, FL processes, Redis) works in or under workdir."""
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ValueError):
            if Path(process.cwd()).is_relative_to(workdir) and process.pid != os.getpid():
                process.kill()


@pytest.mark.slow
def test_the_readme_runs_verbatim_from_serve_to_a_sites_job(tmp_path: Path) -> None:
    # Run where the README says (the repository root's .venv and examples/), without writing into the checkout:
    # the agent keeps its state under its data root, so examples/ is a copy. The only change to the text is the
    # port: the README's 50051 becomes a free one, for serve (FLORIST_PORT) and for every command that calls it.
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(ROOT / "examples", workdir / "examples")
    port = free_service_port()
    address = f"localhost:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLORIST_")}
    env |= {"FLORIST_PORT": str(port), "FLORIST_ADDRESS": address}
    script = walkthrough().replace("localhost:50051", address)
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            start_new_session=True,
        )
    finally:
        stop_everything_started_in(workdir)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    # The CLI section: a finished job, its curves and its client's log.
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SERVING" in out and "FINISHED_SUCCESSFULLY" in out
    # The cookbook: reflection, health, the job followed to its end, a stop.
    assert "florist.v1.JobService" in out and '"status": "SERVING"' in out
    assert '"job_state": "JOB_STATE_FINISHED_SUCCESSFULLY"' in out  # StreamMetrics followed the job to its end
    assert '"state": "JOB_STATE_CANCELLED"' in out  # StopTraining
    created = [json.loads(m) for m in re.findall(r'^\{\n  "job": \{\n    "id".*?^\}$', out, re.M | re.S)]
    assert created and len({c["job"]["id"] for c in created[:2]}) == 1  # the same request_id: the same job
    # From the README to the model on disk and the curves as a PNG, with grpcurl alone doing the calls.
    artifact = json.loads((workdir / "model.json").read_text().split("\n}\n", 1)[0] + "\n}")["artifact"]
    model = (workdir / "model.safetensors").read_bytes()
    assert hashlib.sha256(model).hexdigest() == artifact["sha256"] and len(model) == int(artifact["size_bytes"])
    with safe_open(str(workdir / "model.safetensors"), "np") as tensors:
        assert tensors.keys() and all(tensors.get_tensor(k).size for k in tensors.keys())  # noqa: SIM118
    png = (workdir / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) >= (800, 300)
    rows = list(csv.DictReader((workdir / "curves.csv").open()))
    assert [(r["round"], r["source"]) for r in rows] == [
        (str(n), source) for n in (1, 2) for source in ("aggregated", "client0", "client1")
    ]
    assert all(float(r["val_loss"]) > 0 and 0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    # Run a site: the token line went into the cookbook's auth file, and the site's job ran on the agent.
    assert (workdir / "tokens.txt").read_text().count("\n") == 2
    store = open_store("", workdir / ".florist")
    try:
        newest = store.list_jobs(1, None, JobState.UNSPECIFIED)[0]
    finally:
        store.close()
    assert newest.state == JobState.FINISHED_SUCCESSFULLY, newest.error_message
    assert [c.agent for c in newest.clients] == ["site-a", "site-a"]
    assert out.count("created job") == 2, "run printed the job it created, in the CLI section and on the site"


def test_without_a_token_list_answers_and_a_call_is_refused(tmp_path: Path) -> None:
    """Reflection is public (the schema is the .proto files); every florist method still wants the token."""
    auth = tmp_path / "tokens.txt"
    auth.write_text(f"admin {hashlib.sha256(b'x').hexdigest()} me\n")
    served = serve(tmp_path / "florist", "--auth-file", str(auth))
    grpcurl = [str(ROOT / ".venv/bin/grpcurl"), "-plaintext", served.address]
    try:
        listed = subprocess.run([*grpcurl, "list"], capture_output=True, text=True, timeout=60, check=False)
        called = subprocess.run(
            [*grpcurl, "florist.v1.JobService/ListJobs"], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        stop(served)
    assert listed.returncode == 0 and "florist.v1.JobService" in listed.stdout.split(), listed.stderr
    assert called.returncode != 0 and "Unauthenticated" in called.stderr
