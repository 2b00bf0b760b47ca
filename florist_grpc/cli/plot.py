"""`plot ID --out F.png [--csv F.csv]`: learning curves of a job, aggregated and per client (matplotlib)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format

from florist_grpc.cli.curves import figure
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
from florist_grpc.cli.output import CliError, guarded, print_json
from florist_grpc.progress import JobProgress, RoundRow
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

CSV_COLUMNS = ("round", "source", "val_loss", "val_accuracy", "train_loss")


def csv_rows(rows: list[RoundRow], n_clients: int) -> list[dict[str, object]]:
    """One row per round and source (`aggregated`, `client0`, ...); empty cells for what was not reported."""
    out: list[dict[str, object]] = []
    for row in rows:
        out.append(
            dict(zip(CSV_COLUMNS, (row.number, "aggregated", row.loss, row.accuracy, row.train_loss), strict=True))
        )
        for i in range(n_clients):
            values = (
                row.number,
                f"client{i}",
                row.client_loss.get(i),
                row.client_accuracy.get(i),
                row.client_train_loss.get(i),
            )
            out.append(dict(zip(CSV_COLUMNS, values, strict=True)))
    return [{k: "" if v is None else v for k, v in r.items()} for r in out]


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def title(job: job_pb2.Job, rounds: int, n_clients: int) -> str:
    """What was trained and how: `MLP with FEDAVG (SGD), 3 rounds, 2 clients - job 3f2a...`."""
    trained = " with ".join(name for name in (job.model, job.strategy) if name) or "job"  # a saved job may lack them
    optimizer = f" ({job.optimizer})" if job.optimizer else ""
    return f"{trained}{optimizer}, {count(rounds, 'round')}, {count(n_clients, 'client')} - job {job.id}"


def saved_job(source: Path) -> job_pb2.Job:
    """A job from a saved GetJob response (grpcurl's JSON output; `-` reads stdin), or a saved Job alone."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise CliError(f"{source}: expected a GetJob response ({{job: ...}}) or a job")
    try:  # unknown fields are kept out: a file from another tool should fail loudly, not plot nothing
        return json_format.ParseDict(body.get("job", body), job_pb2.Job())
    except json_format.ParseError as exc:
        raise CliError(f"{source}: not a job: {str(exc).splitlines()[0]}") from None


def fetch_job(job_id: str, conn: Connection) -> job_pb2.Job:
    stub = job_service_pb2_grpc.JobServiceStub(conn.channel())
    request = job_service_pb2.GetJobRequest(job_id=job_id)
    return stub.GetJob(request, metadata=conn.metadata, timeout=CALL_SECONDS).job


@guarded
def plot(
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    job_id: Annotated[
        str | None,
        typer.Argument(help="The job's id (from `job create` or `job list`); or give --from.", show_default=False),
    ] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the numbers as CSV.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Plot a saved GetJob response (e.g. grpcurl's output; `-` reads stdin) instead of asking the server.",
        ),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Plot validation loss, training loss and accuracy per round, aggregated and per client.

    A running job plots the rounds so far. Non-finite values (a diverged run) are marked at the edge of their panel.

    The aggregated training loss is the FL server's, else the clients' mean (FL4Health): its legend says which.

    Examples:
      florist-grpc plot 3f2a9c0d --out curves.png
      florist-grpc plot 3f2a9c0d --out curves.png --csv curves.csv
      florist-grpc plot --from job-done.json --out curves.png
    """
    if from_file is None and job_id is None:
        raise CliError("give the job's id, or --from FILE with a saved GetJob response")
    job = saved_job(from_file) if from_file is not None else fetch_job(str(job_id), Connection(address, token, tls_ca))
    if job_id is not None and job.id != job_id:
        raise CliError(f"{from_file} holds job {job.id or '(no id)'}, not {job_id}")
    progress = JobProgress.from_reports(job)  # the accumulated reports: a running job plots what it has so far
    rows = progress.rounds_table()
    if not rows:
        raise CliError(f"job {job.id} has no rounds to plot yet")
    fig = figure(rows, progress.n_clients, title(job, len(rows), progress.n_clients))
    fig.savefig(out, dpi=100)
    if csv_file is not None:
        with csv_file.open("w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_rows(rows, progress.n_clients))
    if output == Output.json:
        print_json({"png": str(out), "csv": str(csv_file or ""), "rounds": len(rows)})
    else:
        print(f"wrote {out}" + (f" and {csv_file}" if csv_file else ""))
