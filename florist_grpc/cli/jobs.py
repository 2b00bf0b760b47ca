"""`job create|list|get|delete` and `catalog`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format
from rich.table import Table
from rich.text import Text

from florist_grpc.cli.job_watch import watch_jobs
from florist_grpc.cli.jobfile import load_request
from florist_grpc.cli.options import (
    CALL_SECONDS,
    DEFAULT_ADDRESS,
    Address,
    Connection,
    JobId,
    Output,
    OutputFormat,
    TlsCa,
    Token,
)
from florist_grpc.cli.output import CliError, console, guarded, plain_numbers, print_json
from florist_grpc.progress import state_name
from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc, job_pb2
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc as pb_grpc

app = typer.Typer(
    help="""Create, list, show and delete jobs.

A job names a model, a strategy, an optimizer and its clients' data: `florist-grpc catalog` lists the names.

Examples:
  florist-grpc job create --file examples/fedavg-mlp.yaml
  florist-grpc job list --state in_progress""",
    no_args_is_help=True,
    suggest_commands=False,  # click suggests already (see cli/__init__.py)
)

JobFile = Annotated[
    Path,
    typer.Option("--file", "-f", help="Job file, JSON or YAML (see examples/). Relative data paths: from the file."),
]


def jobs_stub(conn: Connection) -> pb_grpc.JobServiceStub:
    return pb_grpc.JobServiceStub(conn.channel())


def job_table(jobs: list[job_pb2.Job]) -> Table:
    table = Table(
        "ID", "STATE", "PROJECT", "OWNER", "MODEL", "STRATEGY", "CLIENTS", "CREATED", box=None, pad_edge=False
    )
    for job in jobs:
        created = job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if job.HasField("create_time") else ""
        table.add_row(
            job.id,
            state_name(job.state),
            job.project,
            job.owner,
            job.model,
            job.strategy,
            str(len(job.clients)),
            created,
        )
    return table


def unconfirmed(client: job_pb2.ClientInfo) -> str:
    """`  (its stop is not confirmed by agent X yet)` for a stopped client its site has not confirmed, else ''."""
    if client.state != job_pb2.CLIENT_STATE_STOPPED or client.stop_confirmed:
        return ""
    return f"  (its stop is not confirmed by agent {client.agent} yet; retried in the background)"


def show_job(job: job_pb2.Job) -> None:
    out = console()
    out.print(job_table([job]))
    config = json.dumps(plain_numbers(json_format.MessageToDict(job.server_config)))
    out.print(f"server {job.server_address}  config {config}")
    if job.model_config.fields:
        out.print(f"model config {json.dumps(plain_numbers(json_format.MessageToDict(job.model_config)))}")
    for i, client in enumerate(job.clients):
        out.print(f"client {i}: {client.data_path}  {job_pb2.ClientState.Name(client.state)}{unconfirmed(client)}")
    if job.error_message:
        out.print(Text(f"error: {job.error_message}", style="red"))


def create_job(conn: Connection, file: Path, request_id: str = "", validate_only: bool = False) -> job_pb2.Job:
    request = load_request(file)
    request.request_id = request_id or request.request_id
    request.validate_only = validate_only
    return jobs_stub(conn).CreateJob(request, metadata=conn.metadata, timeout=CALL_SECONDS).job


@app.command("create")
@guarded
def create(
    file: JobFile,
    request_id: Annotated[str, typer.Option(help="Idempotency key: a retry with it returns the same job.")] = "",
    validate_only: Annotated[
        bool, typer.Option(help="Only validate: store nothing, show the job as it would be.")
    ] = False,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Create a job from a file; prints its id.

    The id is printed alone on its line, for scripts: JOB=$(florist-grpc job create -f job.json).

    Examples:
      florist-grpc job create --file examples/fedavg-mlp.yaml
      florist-grpc job create -f job.json --validate-only
      florist-grpc job create -f job.json --request-id nightly-2026-01-31 -o json
    """
    job = create_job(Connection(address, token, tls_ca), file, request_id, validate_only)
    if output == Output.json:
        print_json(job)
    elif validate_only:
        console().print(f"{file} is valid")
    else:
        print(job.id)


@app.command("list")
@guarded
def list_jobs(
    state: Annotated[str, typer.Option(help="Only jobs in this state, e.g. in_progress.")] = "",
    filter_text: Annotated[
        str,
        typer.Option(
            "--filter",
            help="AIP-160 filter on state, model, strategy, project, owner, e.g. 'state = IN_PROGRESS'.",
        ),
    ] = "",
    page_size: Annotated[int, typer.Option(help="Jobs per page (0 = the server's default, 50).")] = 0,
    page_token: Annotated[str, typer.Option(help="The next_page_token of the previous page.")] = "",
    metrics: Annotated[bool, typer.Option(help="Include the accumulated metrics (JSON output).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the jobs' ids, one per line.")] = False,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="After the list, print every change to the jobs as it comes (Ctrl-C ends)."),
    ] = False,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """List jobs, newest first.

    --state and --filter narrow the list; a page that is not the last ends with the next page's --page-token.
    --watch lists every page, then prints each change (ADDED, MODIFIED, DELETED) as it happens, like
    `kubectl get -w`; it resumes by itself after a lost connection.

    Examples:
      florist-grpc job list
      florist-grpc job list --state in_progress
      florist-grpc job list --filter 'model = "MLP" AND state = FINISHED_SUCCESSFULLY' -o json
      florist-grpc job list --filter 'project = vision AND owner = ann'
      florist-grpc job list --page-size 20 --page-token NEXT_PAGE_TOKEN
      florist-grpc job list --state finished_successfully --page-size 1 -q
      florist-grpc job list --watch --filter 'project = vision'
    """
    conn = Connection(address, token, tls_ca)
    name = "JOB_STATE_" + state.upper().removeprefix("JOB_STATE_") if state else "JOB_STATE_UNSPECIFIED"
    if name not in job_pb2.JobState.keys():  # noqa: SIM118 - an enum wrapper, not a dict
        raise CliError(
            f"unknown state {state!r}; one of {', '.join(state_name(v) for v in job_pb2.JobState.values()[1:])}"
        )
    request = pb.ListJobsRequest(
        page_size=page_size,
        page_token=page_token,
        state=job_pb2.JobState.Value(name),
        filter=filter_text,
        view=pb.JOB_VIEW_FULL if metrics else pb.JOB_VIEW_BASIC,
    )
    if watch:
        if quiet or page_token:
            raise CliError("--watch lists every page and shows changes: it takes neither --quiet nor --page-token")
        watch_jobs(conn, request, output, lambda jobs: console().print(job_table(jobs)))
        return
    response = jobs_stub(conn).ListJobs(request, metadata=conn.metadata, timeout=CALL_SECONDS)
    if quiet:  # for scripts, as `docker ps -q`: ids only, whatever the output format
        for job in response.jobs:
            print(job.id)
        return
    if output == Output.json:
        print_json(response)
        return
    console().print(job_table(list(response.jobs)))
    if response.next_page_token:
        console().print(f"next page: --page-token {response.next_page_token}")


@app.command("get")
@guarded
def get(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Show one job: its state, configuration, clients and error.

    With -o json: the whole Job message, its accumulated metrics included.

    Examples:
      florist-grpc job get 3f2a9c0d
      florist-grpc job get 3f2a9c0d -o json
    """
    conn = Connection(address, token, tls_ca)
    job = jobs_stub(conn).GetJob(pb.GetJobRequest(job_id=job_id), metadata=conn.metadata, timeout=CALL_SECONDS).job
    print_json(job) if output == Output.json else show_job(job)


@app.command("delete")
@guarded
def delete(
    job_id: JobId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Delete a job with its events and logs (refused while it is IN_PROGRESS).

    Stop a running job first: florist-grpc train stop ID.

    Examples:
      florist-grpc job delete 3f2a9c0d
    """
    conn = Connection(address, token, tls_ca)
    jobs_stub(conn).DeleteJob(pb.DeleteJobRequest(job_id=job_id), metadata=conn.metadata, timeout=CALL_SECONDS)
    print_json({"job_id": job_id, "deleted": True}) if output == Output.json else print(f"deleted {job_id}")


@guarded
def catalog(
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Show the models, strategies and optimizers a job may name.

    Job files name these in model, strategy, optimizer and client_type; -o json adds each one's config schema.

    Examples:
      florist-grpc catalog
      florist-grpc catalog -o json
    """
    conn = Connection(address, token, tls_ca)
    stub = catalog_service_pb2_grpc.CatalogServiceStub(conn.channel())
    response = stub.GetCatalog(catalog_service_pb2.GetCatalogRequest(), metadata=conn.metadata, timeout=CALL_SECONDS)
    if output == Output.json:
        print_json(response)
        return
    table = Table("KIND", "NAME", "DESCRIPTION", "CLIENT TYPES", box=None, pad_edge=False)
    for model in response.models:
        table.add_row("model", model.name, model.description, "")
    for strategy in response.strategies:
        table.add_row("strategy", strategy.name, strategy.description, ", ".join(strategy.client_types))
    for optimizer in response.optimizers:
        table.add_row("optimizer", optimizer.name, optimizer.description, "")
    console().print(table)
