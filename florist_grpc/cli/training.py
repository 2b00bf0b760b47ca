"""`train start|stop|watch` and `run` (create + start + watch)."""

from __future__ import annotations

from typing import Annotated

import typer

from florist_grpc.cli.jobs import JobFile, create_job
from florist_grpc.cli.options import (
    DEFAULT_ADDRESS,
    START_SECONDS,
    Address,
    Connection,
    JobId,
    Output,
    OutputFormat,
    TlsCa,
    Token,
)
from florist_grpc.cli.output import console, guarded, print_json
from florist_grpc.cli.watch import watch_job
from florist_grpc.progress import state_name
from florist_grpc.proto.florist.v1 import job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as pb_grpc

app = typer.Typer(help="Start, stop and watch training.", no_args_is_help=True)


def start_job(conn: Connection, job_id: str) -> pb.StartTrainingResponse:
    stub = pb_grpc.TrainingServiceStub(conn.channel())
    return stub.StartTraining(pb.StartTrainingRequest(job_id=job_id), metadata=conn.metadata, timeout=START_SECONDS)


@app.command("start")
@guarded
def start(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Launch the job's FL server and clients; returns once they run."""
    response = start_job(Connection(address, token, tls_ca), job_id)
    if output == Output.json:
        print_json(response)
    else:
        console().print(f"started {job_id}: server {response.server_uuid}, clients {' '.join(response.client_uuids)}")


@app.command("stop")
@guarded
def stop(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Stop the job's FL server and clients; the job ends CANCELLED."""
    conn = Connection(address, token, tls_ca)
    stub = pb_grpc.TrainingServiceStub(conn.channel())
    job = stub.StopTraining(pb.StopTrainingRequest(job_id=job_id), metadata=conn.metadata, timeout=START_SECONDS).job
    print_json(job) if output == Output.json else console().print(f"{job.id} {state_name(job.state)}")


@app.command("watch")
@guarded
def watch(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Follow a job live until it ends (exit code 0 only when it succeeds)."""
    if not watch_job(Connection(address, token, tls_ca), job_id, output):
        raise typer.Exit(1)


@guarded
def run(
    file: JobFile,
    request_id: Annotated[str, typer.Option(help="Idempotency key: a retry with it reuses the same job.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Create a job from a file, start it and watch it to the end (exit code 0 only when it succeeds)."""
    conn = Connection(address, token, tls_ca)
    job = create_job(conn, file, request_id)
    started = start_job(conn, job.id)
    if output == Output.json:
        print_json(job_service_pb2.CreateJobResponse(job=job))
        print_json(started)
    else:
        console().print(f"created job {job.id}; started {len(started.client_uuids)} client(s)")
    if not watch_job(conn, job.id, output):
        raise typer.Exit(1)
