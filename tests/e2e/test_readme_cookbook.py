"""The README's grpcurl cookbook, run verbatim against `florist-grpc serve --auth-file` (a real job included)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.e2e.conftest import serve, stop

ROOT = Path(__file__).resolve().parents[2]


def cookbook() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- cookbook:start -->\n```sh\n(.*?)```\n<!-- cookbook:end -->", readme, re.S)
    assert block, "the README has no cookbook block"
    return block.group(1)


def test_the_cookbook_covers_every_rpc() -> None:
    from florist_grpc.proto.florist.v1 import (
        agent_service_pb2,
        catalog_service_pb2,
        job_service_pb2,
        training_service_pb2,
    )
    from florist_grpc.server import FLORIST_SERVICES

    text = cookbook()
    for module in (job_service_pb2, training_service_pb2, catalog_service_pb2, agent_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.full_name in FLORIST_SERVICES
            for method in service.methods:
                if method.client_streaming:  # AgentService/Connect: the agents' session, not for grpcurl
                    continue
                assert f"{service.full_name}/{method.name}" in text, method.full_name


@pytest.mark.slow
def test_the_cookbook_runs_verbatim_with_a_token(tmp_path: Path) -> None:
    token = "cookbook-token"
    auth = tmp_path / "tokens.txt"
    auth.write_text(f"admin {hashlib.sha256(token.encode()).hexdigest()} me\n")
    served = serve(tmp_path / "florist", "--auth-file", str(auth))
    # Run where the README says (the repository root's .venv and examples/), without writing into the checkout.
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in (".venv", "examples"):
        (workdir / name).symlink_to(ROOT / name)
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", cookbook()],
            cwd=workdir,
            env={**os.environ, "ADDR": served.address, "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        assert stop(served) == 0
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
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
