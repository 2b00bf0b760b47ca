"""Generate the Python code and type stubs of protos/florist/v1 into florist_grpc/proto.

`python tools/genproto.py` regenerates in place; `--check` regenerates into a temporary directory and exits 1
if the committed code differs (CI fails on drift). protoc writes imports as `from florist.v1 import x_pb2`;
they are rewritten to `florist_grpc.proto.florist.v1` so the generated code lives inside our package instead of
claiming a top-level `florist` package.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "florist_grpc" / "proto"
IMPORT = re.compile(r"^(from|import) florist\.v1\b", re.MULTILINE)


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "florist" / "v1").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    # The mypy-protobuf plugins are installed beside this interpreter, which need not be on PATH.
    bindir = Path(sys.executable).parent
    rc = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--plugin=protoc-gen-connectrpc={bindir / 'protoc-gen-connectrpc'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            # The dashboard's Connect services (api/connect_app.py), on these same _pb2 classes.
            f"--connectrpc_out={out}",
            "--connectrpc_opt=protobuf=google",
            *protos,
        ]
    )
    if rc != 0:
        sys.exit(f"protoc failed with exit code {rc}")
    for path in (out / "florist" / "v1").iterdir():
        text = IMPORT.sub(lambda m: f"{m.group(1)} florist_grpc.proto.florist.v1", path.read_text())
        path.write_text(text)
    for package in (out, out / "florist", out / "florist" / "v1"):
        (package / "__init__.py").write_text('"""Generated from protos/; do not edit (tools/genproto.py)."""\n')


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [f"{a}/{n}" for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    for name in cmp.common_dirs:
        out += differences(a / name, b / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        generate(OUT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = differences(OUT, Path(tmp)) if OUT.exists() else [str(OUT)]
    if stale:
        sys.exit("generated code is stale, run `make proto`:\n  " + "\n  ".join(stale))
    print("generated code matches protos/")


if __name__ == "__main__":
    main()
