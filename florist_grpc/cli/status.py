"""`health` and `agents`: is the control plane serving, which sites are connected; `--wait` for either."""

from __future__ import annotations

import time
from typing import Annotated

import grpc
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
from florist_grpc.cli.output import CliError, console, guarded, print_json
from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.proto.florist.v1 import agent_service_pb2, agent_service_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
# `agents --wait` asks ListAgents this often: the API has no stream of agent changes to wait on.
AGENT_POLL_SECONDS = 0.25


def _serving_within(stub: health_pb2_grpc.HealthStub, conn: Connection, seconds: float) -> int:
    """Follow Health/Watch until SERVING or `seconds` pass; wait_for_ready also waits for a server still starting
    (connection refused) instead of failing at once. The last status seen."""
    status: int = health_pb2.HealthCheckResponse.UNKNOWN
    watch = stub.Watch(
        health_pb2.HealthCheckRequest(service=""), metadata=conn.metadata, timeout=seconds, wait_for_ready=True
    )
    try:
        for response in watch:
            status = int(response.status)
            if status == SERVING:
                break
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        watch.cancel()
    return status


@guarded
def health(
    wait: Annotated[
        float, typer.Option(help="Wait up to this many seconds for SERVING (a server still starting included).")
    ] = 0,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Ask grpc.health.v1 whether the control plane serves (exit code 0 only when SERVING).

    Prints SERVING or NOT_SERVING (the store or Redis is unreachable). With --wait, waits for SERVING first:
    scripts start `serve` in the background and then wait for it.

    Examples:
      florist-grpc health
      florist-grpc health --wait 60
      florist-grpc health --address cp.example.org:50051 --tls-ca ca.pem
    """
    conn = Connection(address, token, tls_ca)
    stub = health_pb2_grpc.HealthStub(conn.channel())
    if wait > 0:
        value = _serving_within(stub, conn, wait)
        if value != SERVING:
            reached = (
                "no answer"
                if value == health_pb2.HealthCheckResponse.UNKNOWN
                else "still " + (health_pb2.HealthCheckResponse.ServingStatus.Name(value))
            )
            raise CliError(f"{address} is not SERVING within {wait:g} s ({reached})")
    else:
        value = stub.Check(
            health_pb2.HealthCheckRequest(service=""), metadata=conn.metadata, timeout=CALL_SECONDS
        ).status
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(value)
    print_json({"status": status}) if output == Output.json else print(status)
    if value != SERVING:
        raise typer.Exit(1)


def _list_agents(conn: Connection) -> agent_service_pb2.ListAgentsResponse:
    stub = agent_service_pb2_grpc.AgentServiceStub(conn.channel())
    return stub.ListAgents(agent_service_pb2.ListAgentsRequest(), metadata=conn.metadata, timeout=CALL_SECONDS)


def _connected_within(conn: Connection, names: list[str], seconds: float) -> agent_service_pb2.ListAgentsResponse:
    deadline = time.monotonic() + seconds
    while True:
        response = _list_agents(conn)
        missing = set(names) - {info.name for info in response.agents if info.connected}
        if not missing:
            return response
        if time.monotonic() >= deadline:
            raise CliError(f"not connected within {seconds:g} s: {', '.join(sorted(missing))}")
        time.sleep(AGENT_POLL_SECONDS)


@guarded
def agents(
    wait: Annotated[
        list[str] | None,
        typer.Option(help="Wait until this agent is connected (repeatable), then list.", show_default=False),
    ] = None,
    timeout: Annotated[float, typer.Option(help="How long --wait waits, in seconds.")] = 60,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """List the agents (sites) known to the control plane: name, connected, devices, version, last seen, policy.

    With -o json: one agent per line (NDJSON, as streams), nothing when there are none. With --wait NAME, waits
    (up to --timeout) until that agent is connected: scripts start an agent and then wait for it.

    Examples:
      florist-grpc agents
      florist-grpc agents -o json
      florist-grpc agents --wait site-a --timeout 30
    """
    conn = Connection(address, token, tls_ca)
    response = _connected_within(conn, wait, timeout) if wait else _list_agents(conn)
    if output == Output.json:
        for info in response.agents:  # NDJSON, as streams: one agent per line, nothing when there are none
            print_json(info)
        return
    table = Table("NAME", "CONNECTED", "DEVICES", "VERSION", "LAST SEEN", "POLICY", "PROBLEM", box=None, pad_edge=False)
    for info in response.agents:
        seen = info.last_seen_time.ToDatetime().isoformat(timespec="seconds") if info.last_seen_time.seconds else "-"
        connected = "yes" if info.connected else "no"
        policy = SitePolicy(tuple(info.allowed_projects), tuple(info.allowed_models)).describe()
        policy += f"; max clients {info.max_clients}" if info.max_clients else ""
        table.add_row(info.name, connected, ", ".join(info.devices), info.version, seen, policy, info.problem or "-")
    console().print(table)
