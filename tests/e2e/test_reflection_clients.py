"""Standard clients against a control plane run with an auth file, as a newcomer runs them: `buf curl` (reflection
v1, and its default of trying v1 before v1alpha) and grpc-requests (a reflection client from PyPI) learn the schema
through server reflection without a token, and call ListJobs, GetJob, GetCatalog and StreamMetrics with one."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_requests import ReflectionClient

from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from tests.e2e.conftest import BIN

TOKEN = "look"
EVERY_SERVICE = {
    "florist.v1.AgentService",
    "florist.v1.CatalogService",
    "florist.v1.JobService",
    "florist.v1.TrainingService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


@dataclass
class Secured:
    plane: ControlPlaneThread
    job_id: str  # a finished job with events to replay


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("reflection")
    auth = root / "tokens.txt"
    auth.write_text(f"viewer {hashlib.sha256(TOKEN.encode()).hexdigest()} dashboards\n")
    plane = ControlPlaneThread.in_dir(root / "florist", auth_file=auth)
    try:
        job = create_running(plane.plane, 2)
        play_rounds(job, 2)
        finish(plane.plane, job)
        yield Secured(plane, job.job_id)
    finally:
        plane.stop()


def buf_curl(address: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    """`buf curl` over gRPC (h2c); the token goes with the call only: buf sends -H headers to no reflection call."""
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    command = [str(BIN / "buf"), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *headers, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def json_values(text: str) -> list[Any]:
    """The JSON documents buf curl prints one after another (one per response message)."""
    decoder, at = json.JSONDecoder(), 0
    values: list[Any] = []
    while True:
        at += len(text[at:]) - len(text[at:].lstrip())  # skip the whitespace between documents
        if at == len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def call(secured: Secured, method: str, body: dict[str, Any], reflect: list[str]) -> list[Any]:
    done = buf_curl(secured.plane.address, *reflect, "-d", json.dumps(body), f"http://{secured.plane.address}/{method}")
    assert done.returncode == 0, done.stderr
    return json_values(done.stdout)


@pytest.mark.parametrize("reflect", [["--reflect-protocol", "grpc-v1"], []], ids=["grpc-v1", "default"])
def test_buf_curl_calls_the_read_methods_with_the_token_given_for_them_only(
    secured: Secured, reflect: list[str]
) -> None:
    [listed] = call(secured, "florist.v1.JobService/ListJobs", {}, reflect)
    assert [j["id"] for j in listed["jobs"]] == [secured.job_id]
    [got] = call(secured, "florist.v1.JobService/GetJob", {"job_id": secured.job_id}, reflect)
    assert got["job"]["state"] == "JOB_STATE_FINISHED_SUCCESSFULLY"
    [catalog] = call(secured, "florist.v1.CatalogService/GetCatalog", {}, reflect)
    assert {"FEDAVG", "FEDPROX"} <= {s["name"] for s in catalog["strategies"]}
    streamed = call(secured, "florist.v1.TrainingService/StreamMetrics", {"jobId": secured.job_id}, reflect)
    events = [m["event"] for m in streamed]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["jobState"] == "JOB_STATE_FINISHED_SUCCESSFULLY"


def test_buf_curl_lists_every_service_over_reflection_v1_without_a_token(secured: Secured) -> None:
    address = secured.plane.address
    done = buf_curl(address, "--reflect-protocol", "grpc-v1", "--list-services", f"http://{address}", token="")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == EVERY_SERVICE


def test_a_method_still_needs_the_token_that_reflection_does_not(secured: Secured) -> None:
    address = secured.plane.address
    done = buf_curl(address, "-d", "{}", f"http://{address}/florist.v1.JobService/ListJobs", token="")
    assert done.returncode != 0
    [error] = json_values(done.stderr)
    assert error["code"] == "unauthenticated"  # the schema was found; the call itself was refused


def test_grpc_requests_finds_the_schema_by_reflection_and_calls_the_read_methods(secured: Secured) -> None:
    # Its own descriptor pool: the client knows only what reflection tells it, not this process's florist protos.
    client = ReflectionClient(secured.plane.address, descriptor_pool=DescriptorPool())
    assert set(client.service_names) == EVERY_SERVICE
    assert set(client.get_methods_meta("grpc.reflection.v1.ServerReflection")) == {"ServerReflectionInfo"}
    token = [("authorization", f"Bearer {TOKEN}")]
    listed = client.request("florist.v1.JobService", "ListJobs", {}, metadata=token)
    assert [j["id"] for j in listed["jobs"]] == [secured.job_id]
    got = client.request("florist.v1.JobService", "GetJob", {"job_id": secured.job_id}, metadata=token)
    assert got["job"]["state"] == "JOB_STATE_FINISHED_SUCCESSFULLY"
    catalog = client.request("florist.v1.CatalogService", "GetCatalog", {}, metadata=token)
    assert "MLP" in {m["name"] for m in catalog["models"]}
    stream = client.request("florist.v1.TrainingService", "StreamMetrics", {"job_id": secured.job_id}, metadata=token)
    events = [m["event"] for m in stream]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["job_state"] == "JOB_STATE_FINISHED_SUCCESSFULLY"
    with pytest.raises(grpc.RpcError) as refused:
        client.request("florist.v1.JobService", "ListJobs", {})
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
