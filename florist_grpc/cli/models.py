"""`model download`: a job's saved global model, streamed by TrainingService.DownloadModel."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format

from florist_grpc.cli.options import DEFAULT_ADDRESS, Address, Connection, JobId, Output, OutputFormat, TlsCa, Token
from florist_grpc.cli.output import CliError, guarded, print_json
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc

app = typer.Typer(
    help="""The trained global models of jobs.

The FL server saves the global model after every round it completes; the last one is the final model.

Examples:
  florist-grpc model download 3f2a9c0d --out model.safetensors""",
    no_args_is_help=True,
    suggest_commands=False,  # click suggests already (see cli/__init__.py)
)


def download_model(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], job_id: str, round_number: int, out: Path
) -> Any:
    """Stream a job's saved model into `out` (atomically); the artifact's size and SHA-256 are checked."""
    stub = training_service_pb2_grpc.TrainingServiceStub(channel)
    request = pb.DownloadModelRequest(job_id=job_id, round=round_number)
    artifact, digest, size = None, hashlib.sha256(), 0
    partial = out.with_name(out.name + ".part")
    try:
        with open(partial, "wb") as f:
            for response in stub.DownloadModel(request, metadata=metadata, timeout=600):
                if response.HasField("artifact"):
                    artifact = response.artifact
                else:
                    f.write(response.chunk)
                    digest.update(response.chunk)
                    size += len(response.chunk)
        if artifact is None or size != artifact.size_bytes or digest.hexdigest() != artifact.sha256:
            raise CliError("the download was incomplete or corrupted (size or SHA-256 mismatch); nothing written")
        partial.replace(out)
    finally:  # a failed download (refused, cut, Ctrl-C, corrupted) leaves nothing behind
        partial.unlink(missing_ok=True)
    return artifact


@app.command("download")
@guarded
def download(
    job_id: JobId,
    out: Annotated[Path, typer.Option("--out", help="File to write (.safetensors).")],
    round_number: Annotated[int, typer.Option("--round", help="0 = the last round saved (the final model).")] = 0,
    address: Address = DEFAULT_ADDRESS,
    token: Token = "",
    tls_ca: TlsCa = None,
    output: OutputFormat = Output.text,
) -> None:
    """Download a job's trained global model (safetensors); its size and SHA-256 are checked before writing.

    --round 0 (the default) is the final model. Nothing is left behind when a download fails.

    Examples:
      florist-grpc model download 3f2a9c0d --out model.safetensors
      florist-grpc model download 3f2a9c0d --round 2 --out round-2.safetensors
    """
    conn = Connection(address, token, tls_ca)
    artifact = download_model(conn.channel(), conn.metadata, job_id, round_number, out)
    if output == Output.json:
        print_json(json_format.MessageToDict(artifact, preserving_proto_field_name=True))
    else:
        print(f"{out}: {artifact.model} after round {artifact.round}, {artifact.size_bytes} bytes")
