#!/usr/bin/env python3
"""Write the model that `grpcurl ... florist.v1.TrainingService/DownloadModel` printed to a file, checked.

    grpcurl ... -d '{"job_id": "ID"}' HOST:PORT florist.v1.TrainingService/DownloadModel > model.json
    python3 save_model.py model.json model.safetensors      # or: ... DownloadModel | python3 save_model.py - F

grpcurl prints each response message as its own JSON object (bytes as base64): first the artifact (format, round,
size_bytes, sha256), then the file in chunks. Standard library only, so it runs wherever grpcurl does. The file
is written under a temporary name and renamed only once its size and SHA-256 match the artifact's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def messages(text: str) -> list[dict[str, Any]]:
    """grpcurl's output: JSON objects one after another (pretty-printed, so not one per line)."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while (pos := len(text) - len(text[pos:].lstrip())) < len(text):
        message, pos = decoder.raw_decode(text, pos)
        found.append(message)
    return found


def main(source: str, out: Path) -> str:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    artifact: dict[str, Any] = {}
    digest, size = hashlib.sha256(), 0
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as f:
        for message in messages(text):
            if "artifact" in message:
                artifact = message["artifact"]
            elif "chunk" in message:
                chunk = base64.b64decode(message["chunk"])
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    # proto3 JSON prints 64-bit integers as strings.
    if not artifact or size != int(artifact.get("size_bytes", -1)) or digest.hexdigest() != artifact.get("sha256"):
        partial.unlink()
        raise SystemExit(f"error: {source} is not a complete DownloadModel response (size or SHA-256 mismatch)")
    partial.replace(out)
    model, round_number = artifact.get("model"), artifact.get("round")
    return f"{out}: {model} after round {round_number}, {size} bytes, sha256 {artifact['sha256']}"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: save_model.py DOWNLOADMODEL_OUTPUT.json|- OUT.safetensors")
    print(main(sys.argv[1], Path(sys.argv[2])))
