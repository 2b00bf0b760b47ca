from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from florist_grpc.cli import app
from florist_grpc.testing.simulation import SimulatedJob

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """Run `florist-grpc ARGS...` in-process; stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


def play_diverged_rounds(job: SimulatedJob, rounds: int) -> None:
    """Rounds of a diverged run, reported as the FL processes report them: the validation loss NaN, the training
    loss +inf on the server and -inf on the clients (the reporters write them as "NaN", "Infinity", "-Infinity")."""
    job.server.report_values(host_type="server", fit_start="2026-01-01 00:00:00.000001")
    for n in range(1, rounds + 1):
        for c in job.clients:
            c.report_round(
                n,
                round=n,
                round_end=f"re{n}",
                fit_round_losses={"backward": -math.inf},
                eval_round_loss=math.nan,
                eval_round_metrics={"val - prediction - accuracy": 0.1},
            )
        job.server.report_round(
            n,
            round=n,
            fit_round_metrics={"train - loss": math.inf},
            **{"val - loss - aggregated": math.nan},
            eval_round_metrics_aggregated={"val - prediction - accuracy": 0.1},
        )
    job.server.report_values(fit_end="end", num_rounds=rounds)
