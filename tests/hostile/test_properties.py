"""Property-based hostile input against one running control plane, for every RPC of JobService, TrainingService
and CatalogService: random and huge strings, extreme and non-finite numbers, deep Structs, unicode, missing
fields, bogus ids and page tokens. Every answer is a success or a documented code (never UNKNOWN, INTERNAL or
RESOURCE_EXHAUSTED) with ErrorInfo and a short message, and the server keeps serving.

Nothing here starts training: StartTraining only ever names jobs that do not exist or have already ended.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import catalog_service_pb2, job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message
from tests.hostile.codes import assert_documented, error_of, still_serving

HOSTILE = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
TIMEOUT = 10

# --- what a hostile caller sends ----------------------------------------------------------------------------

# Valid UTF-8 only: protobuf strings cannot carry lone surrogates (the client library refuses them).
_unicode = st.characters(exclude_categories=("Cs",))
strings = st.one_of(
    st.text(_unicode, max_size=40),
    st.sampled_from(["", " ", "MLP", "FEDAVG", "FEDADAM", "SGD", "../../etc/passwd", "\x00", "127.0.0.1:1", "[::1]:0"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "\U0001f600", "%", "\\"]), st.integers(1, 50_000)),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 2.0**53 + 1, 2.0**63, 2.0**64]),
    st.integers(-(2**53), 2**53).map(float),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(strings, children, max_size=4)),
    max_leaves=12,
)


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"x": leaf}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


configs = st.one_of(
    st.dictionaries(strings, json_values, max_size=6),
    st.fixed_dictionaries(
        {"n_server_rounds": numbers, "batch_size": numbers, "local_epochs": numbers},
        optional={"learning_rate": numbers, "server_learning_rate": numbers, "tau": numbers, "seed": numbers},
    ),
    # The deepest a client can still encode and send, so its leaf is a scalar: a list leaf adds levels, and 31 dicts
    # with [[[[None]]]] below them cannot even be built (the client library's recursion limit).
    st.builds(nested, st.integers(1, 31), json_scalars),
)


def struct_of(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


jobs = st.builds(
    lambda model, strategy, optimizer, client_type, config, paths, server, redis: job_pb2.Job(
        model=model,
        strategy=strategy,
        optimizer=optimizer,
        client_type=client_type,
        server_config=struct_of(config),
        clients=[job_pb2.ClientInfo(data_path=p) for p in paths],
        server_address=server,
        redis_address=redis,
    ),
    strings,
    strings,
    strings,
    strings,
    configs,
    st.lists(strings, max_size=4),
    strings,
    strings,
)
int32s = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 0, 1, 2**31 - 1, -(2**31)]))
int64s = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 0, 2**63 - 1, -(2**63)]))
uint64s = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]))


def _token(body: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


page_tokens = st.one_of(
    strings,
    st.builds(_token, json_values),
    st.builds(lambda t, i, s: _token({"t": t, "id": i, "s": s}), numbers, strings, numbers),
    st.builds(lambda t: _token({"t": t, "id": "x", "s": 0}), st.integers(-(10**30), 10**30)),
)


# --- one running control plane with a job of each kind a hostile test may name ------------------------------


@pytest.fixture(scope="module")
def known(hostile_plane: ControlPlaneThread) -> Iterator[dict[str, str]]:
    """Ids of an ended job (safe to stream and to start: it never runs) and of a job never started."""
    ended = hostile_plane.create(job_message(["/hostile/never-read"]))
    store = hostile_plane.plane.store
    assert store.transition(ended.id, {JobState.NOT_STARTED}, JobState.CANCELLED, datetime.now(UTC))
    idle = hostile_plane.create(job_message(["/hostile/never-read"]))
    yield {"ended": ended.id, "idle": idle.id}
    still_serving(hostile_plane)


def bogus_ids() -> st.SearchStrategy[str]:
    return st.one_of(strings, st.builds(lambda: uuid.uuid4().hex))


def check(plane: ControlPlaneThread, call: Any) -> None:
    assert_documented(error_of(call))


# --- JobService ---------------------------------------------------------------------------------------------


@HOSTILE
@given(job=jobs, request_id=strings)
def test_create_job(hostile_plane: ControlPlaneThread, job: job_pb2.Job, request_id: str) -> None:
    request = job_service_pb2.CreateJobRequest(job=job, request_id=request_id)
    check(hostile_plane, lambda: hostile_plane.jobs.CreateJob(request, timeout=TIMEOUT))


@HOSTILE
@given(job_id=bogus_ids())
def test_get_job(hostile_plane: ControlPlaneThread, job_id: str) -> None:
    check(hostile_plane, lambda: hostile_plane.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10))


@HOSTILE
@given(page_size=int32s, page_token=page_tokens, state=int32s)
def test_list_jobs(hostile_plane: ControlPlaneThread, page_size: int, page_token: str, state: int) -> None:
    request = job_service_pb2.ListJobsRequest(page_size=page_size, page_token=page_token, state=state)
    check(hostile_plane, lambda: hostile_plane.jobs.ListJobs(request, timeout=TIMEOUT))


@HOSTILE
@given(job_id=bogus_ids())
def test_delete_job(hostile_plane: ControlPlaneThread, job_id: str) -> None:
    request = job_service_pb2.DeleteJobRequest(job_id=job_id)
    check(hostile_plane, lambda: hostile_plane.jobs.DeleteJob(request, timeout=TIMEOUT))


# --- TrainingService ----------------------------------------------------------------------------------------


@HOSTILE
@given(job_id=bogus_ids(), ended=st.booleans())
def test_start_training(hostile_plane: ControlPlaneThread, known: dict[str, str], job_id: str, ended: bool) -> None:
    request = training_pb.StartTrainingRequest(job_id=known["ended"] if ended else job_id)
    check(hostile_plane, lambda: hostile_plane.training.StartTraining(request, timeout=TIMEOUT))


@HOSTILE
@given(job_id=st.one_of(bogus_ids(), st.sampled_from(["ended", "idle"])))
def test_stop_training(hostile_plane: ControlPlaneThread, known: dict[str, str], job_id: str) -> None:
    request = training_pb.StopTrainingRequest(job_id=known.get(job_id, job_id))
    check(hostile_plane, lambda: hostile_plane.training.StopTraining(request, timeout=TIMEOUT))


@HOSTILE
@given(job_id=st.one_of(bogus_ids(), st.just("ended")), after=uint64s)
def test_stream_metrics(hostile_plane: ControlPlaneThread, known: dict[str, str], job_id: str, after: int) -> None:
    # Only ended or missing jobs: a stream of a job that never ends would (rightly) stay open.
    request = training_pb.StreamMetricsRequest(job_id=known.get(job_id, job_id), after_sequence=after)
    check(hostile_plane, lambda: hostile_plane.training.StreamMetrics(request, timeout=TIMEOUT))


log_sources = st.one_of(
    st.none(),
    st.builds(lambda b: training_pb.LogSource(server=b), st.booleans()),
    st.builds(lambda i: training_pb.LogSource(client_index=i), int32s),
    st.builds(lambda u: training_pb.LogSource(client_uuid=u), strings),
)


@HOSTILE
@given(
    job_id=st.one_of(bogus_ids(), st.sampled_from(["ended", "idle"])),
    source=log_sources,
    offset=int64s,
    follow=st.booleans(),
)
def test_stream_logs(
    hostile_plane: ControlPlaneThread,
    known: dict[str, str],
    job_id: str,
    source: training_pb.LogSource | None,
    offset: int,
    follow: bool,
) -> None:
    if job_id == "idle":
        follow = False  # a job that never runs never ends: following its log would (rightly) not end either
    request = training_pb.StreamLogsRequest(
        job_id=known.get(job_id, job_id), source=source, offset=offset, follow=follow
    )
    check(hostile_plane, lambda: hostile_plane.training.StreamLogs(request, timeout=TIMEOUT))


# --- CatalogService, and bytes that are no request at all ---------------------------------------------------


@HOSTILE
@given(junk=st.binary(max_size=64))
def test_get_catalog_ignores_unknown_fields_and_refuses_garbage(hostile_plane: ControlPlaneThread, junk: bytes) -> None:
    call = hostile_plane.channel.unary_unary(
        "/florist.v1.CatalogService/GetCatalog",
        request_serializer=None,
        response_deserializer=catalog_service_pb2.GetCatalogResponse.FromString,
    )
    check(hostile_plane, lambda: call(junk, timeout=TIMEOUT))


UNARY = ["JobService/CreateJob", "JobService/GetJob", "JobService/ListJobs", "JobService/DeleteJob"]
UNARY += ["TrainingService/StopTraining"]


@HOSTILE
@given(method=st.sampled_from(UNARY), junk=st.binary(max_size=256))
def test_raw_bytes_to_every_unary_method(hostile_plane: ControlPlaneThread, method: str, junk: bytes) -> None:
    call = hostile_plane.channel.unary_unary(f"/florist.v1.{method}", request_serializer=None)
    check(hostile_plane, lambda: call(junk, timeout=TIMEOUT))


def test_the_server_still_serves_after_all_of_it(hostile_plane: ControlPlaneThread) -> None:
    still_serving(hostile_plane)
