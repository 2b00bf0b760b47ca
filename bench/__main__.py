"""`make bench`: every benchmark, printed as it runs, saved to bench/results.json. `--quick` for a smoke run."""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import psutil

from bench import (
    change_cost,
    fanout,
    hub_fanout,
    ingest,
    overhead,
    platform_scale,
    slurm_launcher,
    streams,
    tunnel,
    warm,
)
from bench.stats import dump, record

BENCHMARKS = {
    "fanout": fanout.run,
    "hub_fanout": hub_fanout.run,
    "streams": streams.run,
    "ingest": ingest.run,
    "change_cost": change_cost.run,
    "mongo_batch": ingest.mongo_batch,
    "overhead": overhead.run,
    "warm": warm.run,
    "platform": platform_scale.run,
    "tunnel": tunnel.run_bench,
    "slurm": slurm_launcher.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes: a smoke run, not the reference figures")
    parser.add_argument("only", nargs="*", help=f"run only these, of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    if unknown := set(args.only) - set(BENCHMARKS):
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING)
    record(
        "machine",
        cpus=psutil.cpu_count(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        python=platform.python_version(),
        processor=platform.processor() or platform.machine(),
    )
    began = time.monotonic()
    for name, run in BENCHMARKS.items():
        if not args.only or name in args.only:
            run(args.quick)
    record("total", seconds=time.monotonic() - began)
    dump(str(Path(__file__).parent / "results.json"))


if __name__ == "__main__":
    main()
