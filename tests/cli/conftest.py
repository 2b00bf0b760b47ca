from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from florist_grpc.cli import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """Run `florist-grpc ARGS...` in-process; stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke
