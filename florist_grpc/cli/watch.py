"""`train watch`: a job's progress as a live view on a terminal, as lines in a pipe, as NDJSON for programs.

What the numbers mean is decided in florist_grpc.progress (pure, unit-tested); this module only draws them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import timedelta

import grpc
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from florist_grpc.cli.events import stream_events
from florist_grpc.cli.options import CALL_SECONDS, Connection, Output
from florist_grpc.cli.output import console, print_json
from florist_grpc.progress import JobProgress, fmt, state_name, train_loss_note
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb

REFRESH_PER_SECOND = 4


def duration(seconds: float | None) -> str:
    """`0.4 s` under a minute (a short job is not `0:00:00`), `0:12:05` from a minute on; `-` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else str(timedelta(seconds=round(seconds)))


def status_view(progress: JobProgress, job_id: str, now: float) -> RenderableType:
    """The live part: state, round k/N with a bar, elapsed and ETA, then one row per client."""
    total = progress.total_rounds
    bar = ProgressBar(total=float(total or 1), completed=float(progress.completed_rounds), width=30)
    line = Table.grid(padding=(0, 2))
    line.add_row(
        Text(f"round {progress.completed_rounds}/{total or '?'}"),
        bar,
        Text(f"elapsed {duration(progress.elapsed(now))}"),
        Text(f"ETA {duration(progress.eta(now))}"),
    )
    header = Text.assemble((f"job {job_id}", "bold"), "  ", state_name(progress.state))
    clients = Table("CLIENT", "STATE", "ROUND", "VAL LOSS", "VAL ACCURACY", box=None, pad_edge=False)
    for client in progress.clients():
        clients.add_row(
            str(client.index), client.state, str(client.round or "-"), fmt(client.loss), fmt(client.accuracy)
        )
    parts: list[RenderableType] = [header, line]
    if waiting := progress.waiting_for():
        parts.append(Text(f"waiting for {waiting}", style="yellow"))
    parts.append(clients)
    return Group(*parts)


def rounds_view(progress: JobProgress) -> Table:
    """The final per-round table: aggregated numbers, then each client's validation accuracy; under it, which
    training loss the table shows (the server's aggregate, or the clients' mean when only they report one)."""
    clients = range(progress.n_clients)
    rows = progress.rounds_table()
    table = Table(
        "ROUND",
        "VAL LOSS",
        "VAL ACCURACY",
        "TRAIN LOSS",
        *(f"CLIENT {i} ACC" for i in clients),
        box=None,
        pad_edge=False,
        caption=train_loss_note(rows) or None,
        caption_justify="left",
    )
    for row in rows:
        cells = [fmt(row.client_accuracy.get(i)) for i in clients]
        table.add_row(str(row.number), fmt(row.loss), fmt(row.accuracy), fmt(row.train_loss), *cells)
    return table


class LiveStatus:
    """The live part below the printed lines, drawn from the progress as it is whenever it is drawn: at each
    refresh and with each line printed above it, so a round line and the bar under it always agree."""

    def __init__(self, progress: JobProgress, job_id: str) -> None:
        self.progress, self.job_id = progress, job_id
        self.lock = threading.Lock()  # rich refreshes from its own thread while events are applied

    def __rich__(self) -> RenderableType:
        with self.lock:
            return status_view(self.progress, self.job_id, time.time())


def _notice(out: Console, line: str) -> None:
    failed = "ERROR" in line or "CANCELLED" in line or "connection lost" in line
    out.print(Text(line, style="red" if failed else ""))


def show_progress(
    out: Console, progress: JobProgress, job_id: str, events: Iterable[pb.MetricsEvent], live_view: bool
) -> None:
    """Apply each event and print what is worth telling; on a terminal, with the live status below the lines."""
    status = LiveStatus(progress, job_id)
    waiting = ""

    def tell_waiting() -> None:
        nonlocal waiting
        if not live_view and progress.waiting_for() != waiting:
            waiting = progress.waiting_for()
            if waiting:
                out.print(f"waiting for {waiting}")

    tell_waiting()
    live = Live(status, console=out, refresh_per_second=REFRESH_PER_SECOND)
    if live_view:
        live.start()
    try:
        for event in events:
            with status.lock:
                lines = progress.apply(event)
            for line in lines:
                _notice(out, line)
            tell_waiting()
    finally:
        if live_view:
            live.stop()


def watch_job(conn: Connection, job_id: str, output: Output = Output.text) -> bool:
    """Follow the job to its end; True when it finished successfully."""
    stub = job_service_pb2_grpc.JobServiceStub(conn.channel())
    request = job_service_pb2.GetJobRequest(job_id=job_id)
    job = stub.GetJob(request, metadata=conn.metadata, timeout=CALL_SECONDS).job
    progress = JobProgress.for_job(job)
    if output == Output.json:
        for event in stream_events(conn, job_id):
            progress.apply(event)
            print_json(pb.StreamMetricsResponse(event=event))
        return progress.succeeded
    out = console()

    def lost(after: int, exc: grpc.RpcError) -> None:
        code = exc.code().name if isinstance(exc, grpc.Call) else "error"
        _notice(out, f"connection lost ({code}); resuming after event {after}")

    rounds, clients = progress.total_rounds or "?", len(job.clients)
    out.print(f"watching job {job_id} ({state_name(job.state)}, {rounds} rounds, {clients} clients)")
    show_progress(out, progress, job_id, stream_events(conn, job_id, on_reconnect=lost), out.is_terminal)
    out.print(rounds_view(progress))
    final = job_pb2.JobState.Name(job_pb2.JobState.ValueType(progress.state))
    out.print(f"final state: {final} in {duration(progress.elapsed(time.time()))}")
    return progress.succeeded
