"""`train start|stop|watch` and `run` (create + start + watch)."""

from __future__ import annotations

import shlex
from typing import Annotated

import grpc
import typer

from florist_grpc.cli.jobs import JobFile, create_job, unconfirmed
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

app = typer.Typer(
    help="""Start, stop and watch training.

A job trains until its rounds are done, it fails or it is stopped; watch it from anywhere, as often as needed.

Examples:
  florist-grpc train start 3f2a9c0d
  florist-grpc train watch 3f2a9c0d""",
    no_args_is_help=True,
    suggest_commands=False,  # click suggests already (see cli/__init__.py)
)


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
    """Launch the job's FL server and clients; returns once they run (or once the job waits in the queue, when the
    control plane's limits are reached: it then starts as soon as it fits).

    Follow it with `florist-grpc train watch ID`, or create, start and watch in one go with `florist-grpc run`.

    Examples:
      florist-grpc train start 3f2a9c0d
      florist-grpc train start 3f2a9c0d --address cp.example.org:50051 --tls-ca ca.pem
    """
    response = start_job(Connection(address, token, tls_ca), job_id)
    if output == Output.json:
        print_json(response)
    elif response.queued:
        console().print(f"queued {job_id}: it starts as soon as it fits (`florist-grpc train watch {job_id}`)")
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
    """Stop the job's FL server and clients; the job ends CANCELLED.

    The job keeps its events, logs and saved models; `florist-grpc job delete ID` removes them.

    Examples:
      florist-grpc train stop 3f2a9c0d
    """
    conn = Connection(address, token, tls_ca)
    stub = pb_grpc.TrainingServiceStub(conn.channel())
    job = stub.StopTraining(pb.StopTrainingRequest(job_id=job_id), metadata=conn.metadata, timeout=START_SECONDS).job
    if output == Output.json:
        print_json(job)
        return
    console().print(f"{job.id} {state_name(job.state)}")
    for i, client in enumerate(job.clients):
        if note := unconfirmed(client):
            console().print(f"client {i}:{note}")


def command_line(conn: Connection, *words: str) -> str:
    """`florist-grpc WORDS...` with the flags that reach this control plane (never the token: it is a secret)."""
    flags = [] if conn.address == DEFAULT_ADDRESS else ["--address", conn.address]
    flags += ["--tls-ca", str(conn.tls_ca)] if conn.tls_ca is not None else []
    return shlex.join(["florist-grpc", *words, *flags])


def watch_to_end(conn: Connection, job_id: str, output: Output) -> None:
    """Watch the job; exit 1 unless it succeeds. Ctrl-C stops the watching only, and says so."""
    try:
        succeeded = watch_job(conn, job_id, output)
    except KeyboardInterrupt as exc:
        exc.add_note(
            f"stopped watching job {job_id}; the job goes on. Watch it again: "
            f"{command_line(conn, 'train', 'watch', job_id)} (stop it: {command_line(conn, 'train', 'stop', job_id)})"
        )
        raise
    if not succeeded:
        raise typer.Exit(1)


@app.command("watch")
@guarded
def watch(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Follow a job live until it ends (exit code 0 only when it succeeds).

    Ctrl-C stops watching; the job goes on.

    Examples:
      florist-grpc train watch 3f2a9c0d
      florist-grpc train watch 3f2a9c0d -o json
    """
    watch_to_end(Connection(address, token, tls_ca), job_id, output)


@guarded
def run(
    file: JobFile,
    request_id: Annotated[str, typer.Option(help="Idempotency key: a retry with it reuses the same job.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Create a job from a file, start it and watch it to the end (exit code 0 only when it succeeds).

    The job's id is printed as soon as it is created; Ctrl-C stops watching, the job goes on.

    Examples:
      florist-grpc run --file examples/fedavg-mlp.yaml
      florist-grpc run -f job.json --request-id nightly-2026-01-31 -o json
    """
    conn = Connection(address, token, tls_ca)
    job = create_job(conn, file, request_id)
    if output == Output.json:
        print_json(job_service_pb2.CreateJobResponse(job=job))
    else:
        console().print(f"created job {job.id}")
    try:
        started = start_job(conn, job.id)
    except grpc.RpcError as exc:
        # The job exists: say which one, so it can be inspected, fixed and started, or deleted.
        exc.add_note(
            f"job {job.id} exists but did not start: `{command_line(conn, 'job', 'get', job.id)}` shows it,"
            f" `{command_line(conn, 'train', 'start', job.id)}` starts it once fixed,"
            f" `{command_line(conn, 'job', 'delete', job.id)}` deletes it"
        )
        raise
    except KeyboardInterrupt as exc:
        shown_by = command_line(conn, "job", "get", job.id)
        exc.add_note(f"interrupted while starting job {job.id}: `{shown_by}` shows whether it runs")
        raise
    if output == Output.json:
        print_json(started)
    elif started.queued:
        console().print("queued: it starts as soon as it fits")
    else:
        console().print(f"started {len(started.client_uuids)} client(s)")
    watch_to_end(conn, job.id, output)
