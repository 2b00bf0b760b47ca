"""The hostile requests of issue 9, one by one: each gets a documented code with a short message, never
UNKNOWN, INTERNAL or RESOURCE_EXHAUSTED (the client here has grpc-python's default 8 KiB metadata limit)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.domain.errors import InvalidArgument
from florist_grpc.launch.logs import follow_log
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message
from tests.hostile.codes import error_info, error_of, still_serving


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def deep_create_job_request(depth: int) -> bytes:
    """A CreateJobRequest whose job.server_config nests `depth` Structs (protobuf decodes at most ~32)."""
    value = b"\x11" + struct.pack("<d", 1.0)  # Value.number_value
    nested = b""
    for _ in range(depth):
        nested = _field(1, _field(1, b"x") + _field(2, value))  # Struct.fields["x"] = value
        value = _field(5, nested)  # Value.struct_value
    return _field(1, _field(9, nested))  # CreateJobRequest.job.server_config


def code_and_info(error: grpc.RpcError | None) -> tuple[grpc.StatusCode, str]:
    assert isinstance(error, grpc.Call), "the request was expected to fail"
    assert len((error.details() or "").encode()) <= 1024, "the message echoes unbounded input"
    return error.code(), error_info(error).reason


def test_a_struct_nested_too_deep_to_decode_is_invalid_argument(hostile_plane: ControlPlaneThread) -> None:
    create = hostile_plane.channel.unary_unary(
        "/florist.v1.JobService/CreateJob", request_serializer=None, response_deserializer=None
    )
    error = error_of(lambda: create(deep_create_job_request(200), timeout=10))
    assert code_and_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    streams = hostile_plane.channel.unary_stream(
        "/florist.v1.TrainingService/StreamMetrics", request_serializer=None, response_deserializer=None
    )
    error = error_of(lambda: streams(b"\x0a\xff\xff\xff\xff\x0f", timeout=10))  # a length past the end
    assert code_and_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    still_serving(hostile_plane)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_in_server_config_are_invalid_argument_naming_the_field(
    hostile_plane: ControlPlaneThread, value: float
) -> None:
    job = job_message(["/d"], learning_rate=value)
    error = error_of(lambda: hostile_plane.create(job))
    assert code_and_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB")
    assert isinstance(error, grpc.Call)
    assert "job.server_config.learning_rate: must be a finite number" in (error.details() or "")


def token(body: str) -> str:
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "page_token",
    [
        token('{"t": 1e400, "id": "x", "s": 0}'),
        token('{"t": -1e400, "id": "x", "s": 0}'),
        token('{"t": 1000000000000000000000000000000, "id": "x", "s": 0}'),
        token('{"t": NaN, "id": "x", "s": 0}'),
        token("[" * 100_000),
        "x" * 100_000,
        "%%%",
    ],
)
def test_a_forged_page_token_is_invalid_argument(hostile_plane: ControlPlaneThread, page_token: str) -> None:
    request = job_service_pb2.ListJobsRequest(page_token=page_token)
    error = error_of(lambda: hostile_plane.jobs.ListJobs(request, timeout=10))
    assert code_and_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


@pytest.mark.parametrize("after", [2**63, 2**64 - 1])
def test_an_after_sequence_no_store_can_hold_is_invalid_argument(hostile_plane: ControlPlaneThread, after: int) -> None:
    job = hostile_plane.create(job_message(["/d"]))
    request = training_pb.StreamMetricsRequest(job_id=job.id, after_sequence=after)
    error = error_of(lambda: hostile_plane.training.StreamMetrics(request, timeout=10))
    assert code_and_info(error)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_negative_log_offset_is_invalid_argument(hostile_plane: ControlPlaneThread) -> None:
    job = hostile_plane.create(job_message(["/d"]))
    request = training_pb.StreamLogsRequest(job_id=job.id, offset=-1)
    error = error_of(lambda: hostile_plane.training.StreamLogs(request, timeout=10))
    assert code_and_info(error)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_every_log_stream_refuses_a_negative_offset(tmp_path: Path) -> None:
    """The check sits where the control plane's and the agent's log streams both begin."""

    async def finished() -> bool:
        return True

    async def read() -> None:
        async for _ in follow_log(tmp_path / "log", -1, False, finished):
            pass

    (tmp_path / "log").write_text("line\n")
    with pytest.raises(InvalidArgument):
        asyncio.run(read())


def test_an_18000_character_job_id_gets_a_short_not_found_everywhere(hostile_plane: ControlPlaneThread) -> None:
    job_id = "j" * 18_000
    calls = [
        lambda: hostile_plane.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10),
        lambda: hostile_plane.jobs.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=job_id), timeout=10),
        lambda: hostile_plane.training.StartTraining(training_pb.StartTrainingRequest(job_id=job_id), timeout=10),
        lambda: hostile_plane.training.StopTraining(training_pb.StopTrainingRequest(job_id=job_id), timeout=10),
        lambda: hostile_plane.training.StreamMetrics(training_pb.StreamMetricsRequest(job_id=job_id), timeout=10),
        lambda: hostile_plane.training.StreamLogs(training_pb.StreamLogsRequest(job_id=job_id), timeout=10),
    ]
    for call in calls:
        error = error_of(call)
        assert code_and_info(error) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
        assert isinstance(error, grpc.Call) and len(error.details() or "") < 250


def test_thousands_of_long_unicode_keys_still_give_a_readable_invalid_argument(
    hostile_plane: ControlPlaneThread,
) -> None:
    config = struct_pb2.Struct()
    config.update({f"{i}-" + "\U0001f600" * 500: i for i in range(2_000)})
    job = job_pb2.Job(model="\u00e9" * 10_000, strategy="FEDAVG", server_config=config)
    error = error_of(lambda: hostile_plane.create(job))
    assert code_and_info(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB")
    still_serving(hostile_plane)


def test_error_metadata_is_bounded_too(hostile_plane: ControlPlaneThread) -> None:
    error = error_of(lambda: hostile_plane.get("k" * 5_000))
    assert isinstance(error, grpc.Call)
    assert len(error_info(error).metadata["job_id"]) <= 110
    assert json.dumps(dict(error_info(error).metadata))  # plain strings


def test_request_decoding_leaves_coroutine_style_streams_working(hostile_plane: ControlPlaneThread) -> None:
    """grpc's health Watch writes with context.write() from a coroutine; the decoding wrapper must pass it on."""
    call = health_pb2_grpc.HealthStub(hostile_plane.channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(call).status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()
