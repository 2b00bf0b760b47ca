"""Before and after, side by side in one run: each case runs alternately against an earlier revision's control
plane and this tree's, with this tree's benchmark code on both sides.

python -m bench.compare --before REV [--after REV] [--repeat N] [--out FILE] CASE...

CASE is `module.function(args)` of bench/, e.g. `fanout.fanout(100, 1000)` or `streams.replay(2000)`. The earlier
revision's `florist_grpc` comes from `git archive REV`; this tree's `florist_grpc/testing/history.py` is laid over it
(benchmark support, not the control plane). Every result line is tagged with its side, its repetition and the load
average when it began, and all are written to FILE (bench/results-compare.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stats import record

REPO = Path(__file__).resolve().parent.parent
OVERLAY = ["florist_grpc/testing/history.py"]


def earlier_tree(revision: str, into: Path) -> Path:
    """`revision`'s florist_grpc, with this tree's bench/ and benchmark support laid over it."""
    command = ["git", "-C", str(REPO), "archive", revision, "florist_grpc"]
    archive = subprocess.run(command, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    shutil.copytree(REPO / "bench", into / "bench", ignore=shutil.ignore_patterns("__pycache__", "results*.json"))
    for path in OVERLAY:
        shutil.copy(REPO / path, into / path)
    return into


def run_case(tree: Path, case: str) -> list[dict[str, Any]]:
    """Run one case in its own interpreter on `tree` (the served control plane too, through PYTHONPATH)."""
    module = case.split(".", 1)[0]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        code = (
            "import logging; logging.basicConfig(level=logging.WARNING)\n"
            f"from bench import {module}\nfrom bench.stats import dump\n{case}\ndump({out.name!r})\n"
        )
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, timeout=3600)
        lines: list[dict[str, Any]] = json.loads(Path(out.name).read_text())
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--after", help="the later revision (default: this tree as it is)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs per case")
    parser.add_argument("--out", default=str(REPO / "bench" / "results-compare.json"))
    parser.add_argument("cases", nargs="+")
    args = parser.parse_args()
    revision = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.before], capture_output=True, text=True, check=True
    ).stdout.strip()
    after = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.after or "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="florist-before-") as scratch,
        tempfile.TemporaryDirectory(prefix="florist-after-") as later,
    ):
        # --after: that revision's tree, so that editing this one while it runs changes neither side.
        after_tree = earlier_tree(args.after, Path(later)) if args.after else REPO
        trees = {f"before {revision}": earlier_tree(args.before, Path(scratch)), f"after {after}": after_tree}
        for case in args.cases:
            for repetition in range(1, args.repeat + 1):
                for side, tree in trees.items():
                    load = os.getloadavg()[0]
                    record("compare", side=side, case=case, repetition=repetition, loadavg_1m=load)
                    for line in run_case(tree, case):
                        tags = {"side": side, "compared": case, "repetition": repetition, "loadavg_1m_before": load}
                        results.append({**tags, **line})
                    Path(args.out).write_text(json.dumps(results, indent=1))  # kept as it grows


if __name__ == "__main__":
    main()
