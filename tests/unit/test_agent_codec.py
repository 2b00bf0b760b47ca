"""The agent session's codec: every message either end says survives the wire unchanged, and a launch carries
only what the site shares with the control plane."""

from __future__ import annotations

from dataclasses import replace

import pytest

from florist_grpc.domain.errors import InvalidArgument, NotFound
from florist_grpc.domain.training import training_config
from florist_grpc.fl.run_config import ClientRun
from florist_grpc.launch.agent_codec import (
    command_from_proto,
    command_to_proto,
    message_from_proto,
    message_to_proto,
    request_failed,
)
from florist_grpc.launch.agent_protocol import (
    AgentHello,
    AgentMessage,
    CancelRequest,
    CheckData,
    ClientJob,
    Command,
    DataCheckResult,
    Heartbeat,
    KnownClient,
    LaunchClient,
    LogChunk,
    ProcessExited,
    ProcessStarted,
    ReadLog,
    ReportChange,
    RequestFailed,
    StopClient,
    Unreadable,
    Welcome,
)
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb

# A run as an agent decodes it: every field set, none at its default, and the site's own fields blank.
RUN = ClientRun(
    server_address="10.0.0.1:8080",
    redis_address="",
    uuid="c0ffee",
    model="MLP",
    optimizer="ADAM",
    client_type="FEDPROX",
    data_path="site/train.csv",
    training=training_config("FEDPROX", {"n_server_rounds": 3, "batch_size": 16, "local_epochs": 2}),
    device="cuda:1",
    input_shape=[1, 28, 28],
    num_classes=10,
    model_config={"hidden": [64, 32], "dropout": 0.25, "name": "mlp"},
    label_column="digit",
    cpus=3,
)

COMMANDS: list[Command] = [
    Welcome(),
    LaunchClient("r1", RUN, tls=True),
    StopClient("c0ffee"),
    ReadLog("r2", "c0ffee", offset=4096, follow=True),
    CheckData("r3", "site/train.csv", probe=True, label_column="digit"),
    CancelRequest("r2"),
    # For a job: what the site's policy checks and its audit log records.
    LaunchClient("r4", RUN, job=ClientJob("j1", "vision", "ann", "MLP", 2)),
    CheckData("r5", "site/train.csv", job=ClientJob("j1", "vision", "ann", "MLP", 2)),
]
MESSAGES: list[AgentMessage] = [
    AgentHello(
        "site-a",
        "1.2.3",
        ("cpu", "cuda:0"),
        "/data",
        (KnownClient("c1", running=True), KnownClient("c2", False, 0), KnownClient("c3", False, -9)),
        "its Redis does not answer",
    ),
    AgentHello("site-b", clients=(KnownClient("c4", running=False),), fl_direct=True),  # adopted, ended: code unknown
    AgentHello("site-c", max_clients=2, allowed_projects=("vision", "speech"), allowed_models=("MLP", "MyNet")),
    ProcessStarted("r1", "c0ffee", 4242, "/data/.florist-agent/logs/c0ffee.log"),
    ProcessExited("c0ffee", 1, "Traceback (most recent call last): ..."),
    ProcessExited("c0ffee", None),
    LogChunk("r2", "epoch 1\n", 8, end=True),
    ReportChange("c0ffee", '{"rounds": {"1": {"fit_start": "2024-01-01"}}}'),
    DataCheckResult("r3", ok=True, summary={"rows": 120, "num_classes": 10, "shape": [4], "mean": 0.5}),
    DataCheckResult("r4", ok=False, problem="data_path 'x' is outside this agent's data root"),
    RequestFailed("r5", 9, "no client u1 on this agent"),
    Heartbeat("its Redis does not answer"),
]


def kind_of(message: pb.ConnectRequest | pb.ConnectResponse) -> str | None:
    return message.WhichOneof("message")


def kinds_of(envelope: type[pb.ConnectRequest] | type[pb.ConnectResponse]) -> set[str]:
    return {f.name for f in envelope.DESCRIPTOR.oneofs_by_name["message"].fields}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_request_of_the_control_plane_reaches_the_agent_unchanged(command: Command) -> None:
    wire = pb.ConnectResponse.FromString(command_to_proto(command).SerializeToString())
    assert command_from_proto(wire) == command


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_everything_an_agent_says_reaches_the_control_plane_unchanged(message: AgentMessage) -> None:
    wire = pb.ConnectRequest.FromString(message_to_proto(message).SerializeToString())
    assert message_from_proto(wire) == message


def test_the_examples_cover_every_kind_of_message_on_the_wire() -> None:
    # A message kind added to the .proto without a round trip here fails this test.
    assert {kind_of(command_to_proto(c)) for c in COMMANDS} == kinds_of(pb.ConnectResponse)
    assert {kind_of(message_to_proto(m)) for m in MESSAGES} == kinds_of(pb.ConnectRequest)


def test_a_launch_leaves_the_control_planes_redis_user_and_certificate_behind() -> None:
    at_control_plane = replace(
        RUN,
        redis_address="127.0.0.1:6379",
        redis_username="run-c0ffee",
        redis_password="secret",
        root_certificates_file="/etc/florist/server.pem",
    )
    wire = command_to_proto(LaunchClient("r1", at_control_plane, tls=True))
    assert b"secret" not in wire.SerializeToString()
    assert command_from_proto(wire) == LaunchClient("r1", RUN, tls=True)


def test_a_launch_without_a_device_runs_on_the_agents_choice() -> None:
    wire = command_to_proto(LaunchClient("r1", RUN))
    wire.launch_client.device = ""  # as a control plane that predates devices sends it
    decoded = command_from_proto(wire)
    assert isinstance(decoded, LaunchClient) and decoded.run.device == "auto"


def test_a_launch_with_an_unusable_server_config_is_unreadable_and_answered_by_its_id() -> None:
    wire = command_to_proto(LaunchClient("r1", RUN))
    del wire.launch_client.server_config["n_server_rounds"]
    decoded = command_from_proto(wire)
    assert isinstance(decoded, Unreadable) and decoded.request_id == "r1"
    assert isinstance(decoded.error, InvalidArgument) and "n_server_rounds" in str(decoded.error)


def test_messages_of_a_kind_this_version_does_not_know_decode_to_nothing() -> None:
    assert command_from_proto(pb.ConnectResponse()) is None
    assert message_from_proto(pb.ConnectRequest()) is None


def test_a_failed_request_carries_the_grpc_code_of_its_error() -> None:
    assert request_failed("r1", NotFound("no client u1")) == RequestFailed("r1", 5, "no client u1")
