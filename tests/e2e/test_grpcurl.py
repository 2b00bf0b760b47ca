"""The control plane through the real grpcurl binary, using server reflection only (no .proto files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from florist_grpc.fl.checkpoints import ModelSaver
from tests.e2e.conftest import BIN, Served

SAVE_MODEL = Path(__file__).resolve().parents[2] / "examples" / "grpcurl" / "save_model.py"

JOB = {
    "model": "MLP",
    "strategy": "FEDAVG",
    "optimizer": "SGD",
    "client_type": "FEDAVG",
    "server_config": {"n_server_rounds": 3, "batch_size": 32, "local_epochs": 1},
    "clients": [{"data_path": "/data/c0.pt"}, {"data_path": "/data/c1.pt"}],
}


def grpcurl(served: Served, *args: str, data: Any = None) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "grpcurl"), "-plaintext", "-max-time", "20"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, served.address, *args], capture_output=True, text=True, timeout=60, check=False)


def call(served: Served, method: str, data: Any) -> dict[str, Any]:
    result = grpcurl(served, method, data=data)
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_list_shows_the_florist_services_health_and_reflection(served: Served) -> None:
    result = grpcurl(served, "list")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "florist.v1.AgentService",
        "florist.v1.CatalogService",
        "florist.v1.JobService",
        "florist.v1.TrainingService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_both_reflection_versions_describe_themselves(served: Served) -> None:
    """v1 is served beside v1alpha (api/reflection.py) and its schema is there to describe, like every other."""
    for version in ("v1", "v1alpha"):
        result = grpcurl(served, "describe", f"grpc.reflection.{version}.ServerReflection")
        assert result.returncode == 0, result.stderr
        assert f"stream .grpc.reflection.{version}.ServerReflectionResponse" in result.stdout


def test_describe_shows_rpcs_and_messages(served: Served) -> None:
    result = grpcurl(served, "describe", "florist.v1.TrainingService")
    assert result.returncode == 0, result.stderr
    for rpc in ("StartTraining", "StopTraining", "StreamMetrics", "StreamLogs"):
        assert f"rpc {rpc}" in result.stdout
    message = grpcurl(served, "describe", "florist.v1.MetricsEvent")
    assert "uint64 sequence" in message.stdout and "google.protobuf.Struct patch" in message.stdout


def test_create_get_and_list_jobs_from_json(served: Served) -> None:
    created = call(served, "florist.v1.JobService/CreateJob", {"job": JOB, "request_id": "r1"})["job"]
    assert created["state"] == "JOB_STATE_NOT_STARTED"
    assert created["server_config"] == JOB["server_config"]
    again = call(served, "florist.v1.JobService/CreateJob", {"job": JOB, "request_id": "r1"})["job"]
    assert again["id"] == created["id"]
    got = call(served, "florist.v1.JobService/GetJob", {"job_id": created["id"]})["job"]
    assert got["id"] == created["id"] and len(got["clients"]) == 2
    ids = [created["id"]] + [
        call(served, "florist.v1.JobService/CreateJob", {"job": JOB})["job"]["id"] for _ in range(2)
    ]
    page = call(served, "florist.v1.JobService/ListJobs", {"page_size": 2})
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = call(served, "florist.v1.JobService/ListJobs", {"page_size": 2, "page_token": page["next_page_token"]})
    assert [j["id"] for j in rest["jobs"]] == ids[:1] and "next_page_token" not in rest


def test_errors_carry_status_codes_and_field_violations(served: Served) -> None:
    bad = {**JOB, "model": "NOPE", "server_config": {"n_server_rounds": -1, "batch_size": 1, "local_epochs": 1}}
    result = grpcurl(served, "florist.v1.JobService/CreateJob", data={"job": bad})
    assert result.returncode != 0
    assert "Code: InvalidArgument" in result.stderr
    assert "google.rpc.BadRequest" in result.stderr
    assert '"field":"job.model"' in result.stderr.replace(" ", "")
    assert '"field":"job.server_config.n_server_rounds"' in result.stderr.replace(" ", "")
    missing = grpcurl(served, "florist.v1.JobService/GetJob", data={"job_id": "nope"})
    assert "Code: NotFound" in missing.stderr
    catalog = call(served, "florist.v1.CatalogService/GetCatalog", {})
    assert {s["name"] for s in catalog["strategies"]} >= {"FEDAVG", "FEDPROX", "KRUM"}


def test_health_reports_serving(served: Served) -> None:
    assert call(served, "grpc.health.v1.Health/Check", {})["status"] == "SERVING"
    per_service = call(served, "grpc.health.v1.Health/Check", {"service": "florist.v1.JobService"})
    assert per_service["status"] == "SERVING"


def test_a_corrupt_model_is_data_loss_and_save_model_writes_nothing(served: Served, tmp_path: Path) -> None:
    """grpcurl gets the artifact and some chunks, then DATA_LOSS; examples/grpcurl/save_model.py refuses them."""
    job_id = call(served, "florist.v1.JobService/CreateJob", {"job": JOB})["job"]["id"]
    saver = ModelSaver(served.data_dir.resolve() / "jobs" / job_id / "models", ["w"], "MLP", [64], 10, {})
    path = saver.save(1, [np.arange(3 << 18, dtype=np.float32)])  # 3 MiB: several chunks
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(content)
    result = grpcurl(served, "florist.v1.TrainingService/DownloadModel", data={"job_id": job_id})
    assert result.returncode != 0 and "Code: DataLoss" in result.stderr and "MODEL_CORRUPT" in result.stderr
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    saved = subprocess.run(
        [sys.executable, str(SAVE_MODEL), "-", str(out)], input=result.stdout, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert saved.returncode == 1 and saved.stderr.startswith("error: ") and "mismatch" in saved.stderr
    assert list(out.parent.iterdir()) == []
