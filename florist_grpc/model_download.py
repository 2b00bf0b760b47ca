"""`florist-grpc model download`: a job's saved global model, streamed by TrainingService.DownloadModel."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc


def download_model(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], job_id: str, round_number: int, out: Path
) -> Any:
    """Stream a job's saved model into `out` (atomically); the artifact's size and SHA-256 are checked."""
    stub = training_service_pb2_grpc.TrainingServiceStub(channel)
    request = pb.DownloadModelRequest(job_id=job_id, round=round_number)
    artifact, digest, size = None, hashlib.sha256(), 0
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as f:
        for response in stub.DownloadModel(request, metadata=metadata, timeout=600):
            if response.HasField("artifact"):
                artifact = response.artifact
            else:
                f.write(response.chunk)
                digest.update(response.chunk)
                size += len(response.chunk)
    if artifact is None or size != artifact.size_bytes or digest.hexdigest() != artifact.sha256:
        partial.unlink(missing_ok=True)
        raise ValueError("the download was incomplete or corrupted (size or SHA-256 mismatch); nothing written")
    partial.replace(out)
    return artifact


def cmd_model(args: argparse.Namespace) -> int:
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    with grpc.insecure_channel(args.address) as channel:
        artifact = download_model(channel, metadata, args.job_id, args.round, Path(args.out))
    if args.output == "json":
        print(json_format.MessageToJson(artifact, preserving_proto_field_name=True))
    else:
        print(f"{args.out}: {artifact.model} after round {artifact.round}, {artifact.size_bytes} bytes")
    return 0


def add_model_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """`florist-grpc model download ID [--round N] --out F.safetensors` (connection flags from `common`)."""
    model = sub.add_parser("model", help="download a job's trained global model")
    download = model.add_subparsers(dest="model_command", required=True).add_parser("download", parents=[common])
    download.add_argument("job_id")
    download.add_argument("--round", type=int, default=0, help="0 = the last round saved (the final model)")
    download.add_argument("--out", required=True, help="file to write (.safetensors)")
    model.set_defaults(func=cmd_model)
