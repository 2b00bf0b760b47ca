"""AgentService's protobuf messages <-> an agent session's plain values (launch/agent_protocol.py), both ways.

The one place where either end of a session converts: the control plane's servicer (api/agent_service.py) and the
agent's session (agent/session.py) call it at the stream, so what lies behind them never sees protobuf.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any, cast

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from florist_grpc.domain.errors import FloristError
from florist_grpc.domain.portable_json import whole_numbers
from florist_grpc.domain.training import TrainingConfig
from florist_grpc.fl.run_config import ClientRun
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
from florist_grpc.rpc_errors import code_of

# Messages whose fields are all plain values named as in the .proto: converted field by field, by name.
# The others (a run, Structs, repeated or optional fields) have their own functions below.
_PLAIN_COMMANDS: dict[type[Any], tuple[str, type[Message]]] = {
    Welcome: ("welcome", pb.Welcome),
    StopClient: ("stop_client", pb.StopClient),
    ReadLog: ("read_log", pb.ReadLog),
    CancelRequest: ("cancel_request", pb.CancelRequest),
}
_PLAIN_MESSAGES: dict[type[Any], tuple[str, type[Message]]] = {
    ProcessStarted: ("process_started", pb.ProcessStarted),
    LogChunk: ("log_chunk", pb.LogChunk),
    ReportChange: ("report_change", pb.ReportChange),
    RequestFailed: ("request_failed", pb.RequestFailed),
    Heartbeat: ("heartbeat", pb.Heartbeat),
}

# The ClientRun fields a LaunchClient carries under the same name, as they are.
_SHARED_RUN_FIELDS = (
    "server_address",
    "data_path",
    "model",
    "optimizer",
    "client_type",
    "device",
    "num_classes",
    "label_column",
    "cpus",  # Job.resources.cpus, applied as torch threads by the agent's client as by a local one
)


def command_to_proto(command: Command) -> pb.ConnectResponse:
    """The control plane's request as it goes on the wire."""
    if isinstance(command, LaunchClient):
        return pb.ConnectResponse(launch_client=_launch_to_proto(command))
    if isinstance(command, CheckData):
        check = pb.CheckData(**{**asdict(command), "job": pb.ClientJob(**asdict(command.job))})
        return pb.ConnectResponse(check_data=check)
    return pb.ConnectResponse(**_plain_to_proto(_PLAIN_COMMANDS, command))


def command_from_proto(message: pb.ConnectResponse) -> Command | Unreadable | None:
    """The control plane's request as the agent reads it; None for a kind this agent does not know (a newer
    control plane's) or none."""
    kind = message.WhichOneof("message")
    if kind == "launch_client":
        return _launch_from_proto(message.launch_client)
    if kind == "check_data":
        check = message.check_data
        return CheckData(check.request_id, check.data_path, check.probe, check.label_column, _job_of(check.job))
    return cast(Command | None, _plain_from_proto(_PLAIN_COMMANDS, kind, message))


def message_to_proto(message: AgentMessage) -> pb.ConnectRequest:
    """What the agent says, as it goes on the wire."""
    if isinstance(message, AgentHello):
        return pb.ConnectRequest(hello=_hello_to_proto(message))
    if isinstance(message, ProcessExited):
        exited = pb.ProcessExited(
            client_uuid=message.client_uuid, log_tail=message.log_tail, **_exit_code_fields(message.exit_code)
        )
        return pb.ConnectRequest(process_exited=exited)
    if isinstance(message, DataCheckResult):
        result = pb.DataCheckResult(
            request_id=message.request_id, ok=message.ok, problem=message.problem, summary=to_struct(message.summary)
        )
        return pb.ConnectRequest(data_check_result=result)
    return pb.ConnectRequest(**_plain_to_proto(_PLAIN_MESSAGES, message))


def message_from_proto(message: pb.ConnectRequest) -> AgentMessage | None:
    """What the agent said, as the control plane reads it; None for a kind this control plane does not know (a
    newer agent's) or none."""
    kind = message.WhichOneof("message")
    if kind == "hello":
        return _hello_from_proto(message.hello)
    if kind == "process_exited":
        exited = message.process_exited
        return ProcessExited(exited.client_uuid, _exit_code_of(exited), exited.log_tail)
    if kind == "data_check_result":
        result = message.data_check_result
        return DataCheckResult(result.request_id, result.ok, result.problem, from_struct(result.summary))
    return cast(AgentMessage | None, _plain_from_proto(_PLAIN_MESSAGES, kind, message))


def request_failed(request_id: str, error: FloristError) -> RequestFailed:
    """The answer to a request the agent could not carry out, with the gRPC code of `error`."""
    return RequestFailed(request_id, code_of(error), str(error))


def _plain_to_proto(table: dict[type[Any], tuple[str, type[Message]]], value: Any) -> dict[str, Any]:
    kind, proto = table[type(value)]
    return {kind: proto(**asdict(value))}


def _plain_from_proto(table: dict[type[Any], tuple[str, type[Message]]], kind: str | None, message: Message) -> Any:
    plain = next((cls for cls, (name, _) in table.items() if name == kind), None)
    if plain is None:
        return None
    inner = getattr(message, cast(str, kind))
    return plain(**{f.name: getattr(inner, f.name) for f in fields(plain)})


def _launch_to_proto(launch: LaunchClient) -> pb.LaunchClient:
    run = launch.run
    return pb.LaunchClient(
        request_id=launch.request_id,
        client_uuid=run.uuid,
        server_config=to_struct(run.training.to_server_config()),
        tls=launch.tls,
        job=pb.ClientJob(**asdict(launch.job)),
        input_shape=run.input_shape,
        model_config=to_struct(run.model_config),
        **{name: getattr(run, name) for name in _SHARED_RUN_FIELDS},
    )


def _launch_from_proto(launch: pb.LaunchClient) -> LaunchClient | Unreadable:
    try:
        training = TrainingConfig.from_server_config(from_struct(launch.server_config))
    except FloristError as exc:
        return Unreadable(launch.request_id, exc)
    run = ClientRun(
        redis_address="",  # the site's own
        uuid=launch.client_uuid,
        training=training,
        input_shape=list(launch.input_shape),
        model_config=from_struct(launch.model_config),
        **{name: getattr(launch, name) for name in _SHARED_RUN_FIELDS},
    )
    # A control plane that predates devices sends none: the agent picks one.
    run = run if run.device else replace(run, device="auto")
    return LaunchClient(launch.request_id, run, launch.tls, _job_of(launch.job))


def _job_of(job: pb.ClientJob) -> ClientJob:
    return ClientJob(job.id, job.project, job.owner, job.model, job.client_index)


def _hello_to_proto(hello: AgentHello) -> pb.AgentHello:
    clients = [
        pb.KnownClient(client_uuid=c.client_uuid, running=c.running, **_exit_code_fields(c.exit_code))
        for c in hello.clients
    ]
    return pb.AgentHello(**{**asdict(hello), "clients": clients})  # the rest as named


def _hello_from_proto(hello: pb.AgentHello) -> AgentHello:
    clients = tuple(KnownClient(c.client_uuid, c.running, _exit_code_of(c)) for c in hello.clients)
    return AgentHello(
        hello.name,
        hello.version,
        tuple(hello.devices),
        hello.data_root,
        clients,
        hello.problem,
        hello.max_clients,
        tuple(hello.allowed_projects),
        tuple(hello.allowed_models),
        fl_direct=hello.fl_direct,
    )


def _exit_code_fields(code: int | None) -> dict[str, Any]:
    # proto3 has no optional int here: a flag says whether the code is known.
    return {"exit_code": code or 0, "exit_code_known": code is not None}


def _exit_code_of(message: pb.KnownClient | pb.ProcessExited) -> int | None:
    return message.exit_code if message.exit_code_known else None


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """Plain JSON as a Struct."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The Struct as plain JSON; integral numbers are ints again (a Struct carries only doubles, and shapes,
    counts and labels are integers)."""
    value: dict[str, Any] = whole_numbers(json_format.MessageToDict(struct))
    return value
