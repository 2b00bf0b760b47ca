"""`health` and `agents`: is the control plane serving, which sites are connected."""

from __future__ import annotations

import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.table import Table

from florist_grpc.cli.options import (
    CALL_SECONDS,
    DEFAULT_ADDRESS,
    Address,
    Connection,
    Output,
    OutputFormat,
    TlsCa,
    Token,
)
from florist_grpc.cli.output import console, guarded, print_json
from florist_grpc.proto.florist.v1 import agent_service_pb2, agent_service_pb2_grpc


@guarded
def health(
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Ask grpc.health.v1 whether the control plane serves (exit code 0 only when SERVING).

    Prints SERVING or NOT_SERVING (the store or Redis is unreachable).

    Examples:
      florist-grpc health
      florist-grpc health --address cp.example.org:50051 --tls-ca ca.pem
    """
    conn = Connection(address, token, tls_ca)
    stub = health_pb2_grpc.HealthStub(conn.channel())
    response = stub.Check(health_pb2.HealthCheckRequest(service=""), metadata=conn.metadata, timeout=CALL_SECONDS)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print_json({"status": status}) if output == Output.json else print(status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise typer.Exit(1)


@guarded
def agents(
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """List the agents (sites) known to the control plane: name, connected, devices, version, last seen.

    With -o json: one agent per line (NDJSON, as streams), nothing when there are none.

    Examples:
      florist-grpc agents
      florist-grpc agents -o json
    """
    conn = Connection(address, token, tls_ca)
    stub = agent_service_pb2_grpc.AgentServiceStub(conn.channel())
    response = stub.ListAgents(agent_service_pb2.ListAgentsRequest(), metadata=conn.metadata, timeout=CALL_SECONDS)
    if output == Output.json:
        for info in response.agents:  # NDJSON, as streams: one agent per line, nothing when there are none
            print_json(info)
        return
    table = Table("NAME", "CONNECTED", "DEVICES", "VERSION", "LAST SEEN", box=None, pad_edge=False)
    for info in response.agents:
        seen = info.last_seen_time.ToDatetime().isoformat(timespec="seconds") if info.last_seen_time.seconds else "-"
        table.add_row(info.name, "yes" if info.connected else "no", ", ".join(info.devices), info.version, seen)
    console().print(table)
