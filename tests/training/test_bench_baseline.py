"""The benchmarks' baseline, the "plain script" (bench/overhead.py: Flower processes launched by hand, no control
plane), still trains: every warm-start ratio in docs/benchmarks.md divides by it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from florist_grpc.fl.make_data import write_synthetic


def test_every_benchmark_module_imports() -> None:
    from bench.__main__ import BENCHMARKS

    assert {"warm", "overhead", "ingest"} <= set(BENCHMARKS)
    for name in ("harness", "stats", "load", "federated_cost", "florist_baseline"):
        importlib.import_module(f"bench.{name}")


@pytest.mark.slow
def test_the_plain_script_trains_a_job_with_the_control_planes_run_documents(tmp_path: Path) -> None:
    from bench.overhead import CONFIG, plain_job

    data = write_synthetic(tmp_path / "data", 2)
    seconds, report = plain_job(data, tmp_path, {**CONFIG, "n_server_rounds": 2})
    assert seconds > 0 and "fit_end" in report
    assert set(report["rounds"]) == {"1", "2"}
    assert all(report["rounds"][n]["eval_round_metrics_aggregated"] for n in ("1", "2"))
    assert len(list(tmp_path.glob("plain-*/models/round-2.safetensors"))) == 1  # the same checkpoints as a job
