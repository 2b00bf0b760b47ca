"""`logs ID [--client N] [--follow]`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from florist_grpc.cli.options import DEFAULT_ADDRESS, Address, Connection, JobId, Output, OutputFormat, TlsCa, Token
from florist_grpc.cli.output import guarded, print_json
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc


@guarded
def logs(
    job_id: JobId,
    client: Annotated[
        int | None, typer.Option(help="A client's log, by its index in the job; default: the server's.")
    ] = None,
    offset: Annotated[int, typer.Option(help="Start at this byte offset of the log.")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep printing as the log grows, until the job ends.")
    ] = False,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Print the FL server's or one client's log.

    Without --follow it prints what the log holds now and exits.

    Examples:
      florist-grpc logs 3f2a9c0d
      florist-grpc logs 3f2a9c0d --client 1 --follow
    """
    conn = Connection(address, token, tls_ca)
    source = pb.LogSource(client_index=client) if client is not None else pb.LogSource(server=True)
    request = pb.StreamLogsRequest(job_id=job_id, source=source, offset=offset, follow=follow)
    for chunk in pb_grpc.TrainingServiceStub(conn.channel()).StreamLogs(request, metadata=conn.metadata):
        if output == Output.json:
            print_json(chunk)
        else:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
