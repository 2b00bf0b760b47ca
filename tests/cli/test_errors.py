"""A failed call reaches the user whole and once: every google.rpc detail, in text and with --output json; `run`
names the job it created before it failed to start it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from florist_grpc.cli.options import Output
from florist_grpc.cli.output import describe_rpc_error
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.cli.conftest import Invoke


def job_file(tmp_path: Path, **fields: object) -> Path:
    body = {
        "model": "MLP",
        "strategy": "FEDAVG",
        "optimizer": "SGD",
        "client_type": "FEDAVG",
        "server_config": {"n_server_rounds": 2, "batch_size": 32, "local_epochs": 1},
        "clients": [{"data_path": str(tmp_path / "missing0.pt")}, {"data_path": str(tmp_path / "missing1.pt")}],
        **fields,
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(body))
    return path


def test_run_with_missing_data_names_the_job_it_created_and_each_missing_file_once(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    result = cli("run", "--file", job_file(tmp_path), "--address", plane.address)
    assert result.exit_code == 1
    found = re.match(r"created job ([0-9a-f]+)\n", result.stdout)
    assert found, result.stdout
    job_id = found.group(1)
    assert plane.get(job_id).state == job_pb2.JOB_STATE_NOT_STARTED
    err = result.stderr
    assert err.startswith("error: FAILED_PRECONDITION: the clients' data cannot be trained on; nothing was launched\n")
    for i in (0, 1):
        line = f"  job.clients[{i}].data_path: data file {tmp_path / f'missing{i}.pt'} does not exist\n"
        assert err.count(line) == 1, err
    assert f"florist-grpc job get {job_id}" in err and f"florist-grpc job delete {job_id}" in err
    assert "Traceback" not in result.output


def test_run_with_missing_data_in_json_gives_the_job_then_the_whole_status(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    result = cli("run", "--file", job_file(tmp_path), "--address", plane.address, "-o", "json")
    assert result.exit_code == 1
    [created] = [json.loads(line) for line in result.stdout.splitlines()]
    job_id = created["job"]["id"]
    [report] = [json.loads(line) for line in result.stderr.splitlines()]
    error = report["error"]
    assert (error["code"], error["status"]) == (code_pb2.FAILED_PRECONDITION, "FAILED_PRECONDITION")
    [bad_request] = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert [v["field"] for v in bad_request["field_violations"]] == [
        "job.clients[0].data_path",
        "job.clients[1].data_path",
    ]
    assert any(d["@type"].endswith("google.rpc.ErrorInfo") for d in error["details"])
    assert job_id in report["notes"][0]


def test_invalid_argument_shows_each_violation_once(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    path = job_file(tmp_path, model="NOPE", optimizer="")
    result = cli("job", "create", "--file", path, "--address", plane.address)
    assert result.exit_code == 1
    err = result.stderr
    assert err.startswith("error: INVALID_ARGUMENT: ")
    assert err.count("unknown model 'NOPE'") == 1 and err.count("unknown optimizer ''") == 1, err
    assert "\n  job.model: unknown model 'NOPE'" in err and "\n  reason: INVALID_JOB\n" in err


def test_not_found_shows_the_reason_and_its_metadata(cli: Invoke, plane: ControlPlaneThread) -> None:
    result = cli("job", "get", "no-such-job", "--address", plane.address)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: NOT_FOUND: job 'no-such-job' not found",
        "  reason: JOB_NOT_FOUND (job_id=no-such-job)",
    ]
    as_json = json.loads(cli("job", "get", "no-such-job", "--address", plane.address, "-o", "json").stderr)
    [info] = as_json["error"]["details"]
    assert info["metadata"] == {"job_id": "no-such-job"} and info["reason"] == "JOB_NOT_FOUND"


def packed(*details: object) -> list[any_pb2.Any]:
    out = []
    for detail in details:
        if isinstance(detail, any_pb2.Any):
            out.append(detail)
            continue
        message = any_pb2.Any()
        message.Pack(detail)  # type: ignore[arg-type]
        out.append(message)
    return out


EVERY_DETAIL = status_pb2.Status(
    code=code_pb2.FAILED_PRECONDITION,
    message="the site refuses the job",
    details=packed(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="job.clients[0].data_path", description="data file /d/c0.pt does not exist"
                )
            ]
        ),
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="SITE_POLICY", subject="agent site-a", description="model CNN is not allowed"
                )
            ]
        ),
        error_details_pb2.ErrorInfo(reason="SITE_REFUSED", domain="florist.v1", metadata={"agent": "site-a"}),
        error_details_pb2.ResourceInfo(
            resource_type="florist.v1.Job", resource_name="jobs/j1", owner="alice", description="refused"
        ),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=5)),
        any_pb2.Any(type_url="type.example.com/acme.Thing", value=b"\x08\x01"),
    ),
)


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A gRPC server whose health check fails with a status carrying every kind of google.rpc detail."""

    def check(request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> None:
        context.abort_with_status(rpc_status.to_status(EVERY_DETAIL))

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_every_google_rpc_detail_is_shown_once_in_text(cli: Invoke, refusing_server: str) -> None:
    result = cli("health", "--address", refusing_server)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: FAILED_PRECONDITION: the site refuses the job",
        "  job.clients[0].data_path: data file /d/c0.pt does not exist",
        "  agent site-a: model CNN is not allowed (SITE_POLICY)",
        "  reason: SITE_REFUSED (agent=site-a)",
        "  resource: florist.v1.Job jobs/j1, owned by alice: refused",
        '  google.rpc.RetryInfo: {"retry_delay": "5s"}',
        '  acme.Thing: {"value": "CAE="}',
    ]


def test_every_google_rpc_detail_is_in_the_json_error(cli: Invoke, refusing_server: str) -> None:
    result = cli("health", "--address", refusing_server, "-o", "json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)["error"]
    assert (error["code"], error["status"], error["message"]) == (9, "FAILED_PRECONDITION", "the site refuses the job")
    types = [d["@type"].rsplit("/", 1)[-1] for d in error["details"]]
    assert types == [
        "google.rpc.BadRequest",
        "google.rpc.PreconditionFailure",
        "google.rpc.ErrorInfo",
        "google.rpc.ResourceInfo",
        "google.rpc.RetryInfo",
        "acme.Thing",
    ]
    assert error["details"][1]["violations"][0] == {
        "type": "SITE_POLICY",
        "subject": "agent site-a",
        "description": "model CNN is not allowed",
    }
    assert error["details"][3]["owner"] == "alice" and error["details"][2]["metadata"] == {"agent": "site-a"}


def test_a_failed_grpc_aio_call_is_described_as_the_same_synchronous_call_is(refusing_server: str) -> None:
    # The agent's calls are grpc.aio ones: it reports their failures with the CLI's description.
    request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(refusing_server) as channel, pytest.raises(grpc.RpcError) as raised:
        health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)

    async def failed_aio_call() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(refusing_server) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
            return failed.value

    aio = asyncio.run(failed_aio_call())
    for output in Output:
        assert describe_rpc_error(aio, output) == describe_rpc_error(raised.value, output)
    assert describe_rpc_error(aio).splitlines()[:4] == [
        "FAILED_PRECONDITION: the site refuses the job",
        "  job.clients[0].data_path: data file /d/c0.pt does not exist",
        "  agent site-a: model CNN is not allowed (SITE_POLICY)",
        "  reason: SITE_REFUSED (agent=site-a)",
    ]


def test_a_user_error_with_json_output_is_a_json_object(cli: Invoke, tmp_path: Path) -> None:
    result = cli("job", "create", "--file", tmp_path / "nope.json", "-o", "json")
    assert result.exit_code == 2
    assert json.loads(result.stderr)["error"]["message"].startswith(f"cannot read {tmp_path / 'nope.json'}")
