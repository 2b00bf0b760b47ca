"""Generate the TypeScript code of protos/florist/v1 and google/rpc into clients/typescript/src/gen.

`python tools/genproto_ts.py` regenerates in place; `--check` regenerates into a temporary directory and exits 1
if the committed code differs (the TypeScript twin of tools/genproto.py). buf runs protoc-gen-es from
clients/typescript/node_modules (clients/typescript/buf.gen.yaml), so `npm ci` must have run there. The
google/rpc protos that error details need (BadRequest, ErrorInfo, Status) come from the googleapis-common-protos
wheel installed beside this interpreter; they are staged in a temporary directory so that buf sees exactly
those files and not the rest of site-packages.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.rpc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
CLIENT = ROOT / "clients" / "typescript"
OUT_REL = Path("src") / "gen"  # the template's `out`, relative to CLIENT
OUT = CLIENT / OUT_REL
PLUGIN = CLIENT / "node_modules" / ".bin" / "protoc-gen-es"
# buf (the buf-bin wheel) is installed beside this interpreter, which need not be on PATH.
BUF = Path(sys.executable).parent / "buf"


def google_rpc_protos() -> list[Path]:
    """google/rpc/*.proto as shipped in the installed googleapis-common-protos (path differs per Python)."""
    found = sorted(p for directory in google.rpc.__path__ for p in Path(directory).glob("*.proto"))
    if not found:
        sys.exit(f"no google/rpc/*.proto under {list(google.rpc.__path__)}: is googleapis-common-protos installed?")
    return found


def generate(base: Path) -> None:
    """Write the generated code to base/src/gen."""
    if not PLUGIN.exists():
        sys.exit(f"{PLUGIN} is missing: run `npm ci` in {CLIENT} first (make proto does)")
    with tempfile.TemporaryDirectory() as googleapis:
        staged = Path(googleapis) / "google" / "rpc"
        staged.mkdir(parents=True)
        for proto in google_rpc_protos():
            shutil.copyfile(proto, staged / proto.name)
        for source in (PROTO_ROOT, Path(googleapis)):
            command = [str(BUF), "generate", str(source), "--template", "buf.gen.yaml", "--output", str(base)]
            # The template names the plugin and `out` relative to the client's directory.
            if subprocess.run(command, cwd=CLIENT, check=False).returncode != 0:
                sys.exit(f"buf generate failed for {source}")


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [f"{a}/{n}" for n in cmp.left_only + cmp.right_only]
    # dircmp's diff_files compares os.stat signatures first; compare contents.
    out += [f"{a}/{n}" for n in cmp.common_files if not filecmp.cmp(a / n, b / n, shallow=False)]
    for name in cmp.common_dirs:
        out += differences(a / name, b / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = Path(tmp) / OUT_REL
        generate(Path(tmp))
        if not args.check:
            shutil.rmtree(OUT, ignore_errors=True)
            shutil.copytree(generated, OUT)
            return
        stale = differences(OUT, generated) if OUT.exists() else [str(OUT)]
    if stale:
        sys.exit("generated TypeScript is stale, run `make proto`:\n  " + "\n  ".join(stale))
    print("generated TypeScript matches protos/")


if __name__ == "__main__":
    main()
