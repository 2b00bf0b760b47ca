"""Two `florist-grpc serve`s never share a port or a data directory: the second one exits non-zero and says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import BIN, serve, stop


def _second_serve(data_dir: Path, port: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "florist-grpc"), "serve", "--port", port, "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_serve_on_the_same_port_exits_naming_the_port(tmp_path: Path) -> None:
    first = serve(tmp_path / "first")
    try:
        port = first.address.rsplit(":", 1)[1]
        second = _second_serve(tmp_path / "second", port)
        assert second.returncode != 0
        assert f":{port}" in second.stderr and "in use" in second.stderr
        assert first.process.poll() is None  # the first one keeps serving
    finally:
        assert stop(first) == 0


def test_a_second_serve_on_the_same_data_dir_exits_naming_the_holder(tmp_path: Path) -> None:
    first = serve(tmp_path / "florist")
    try:
        second = _second_serve(tmp_path / "florist", "0")
        assert second.returncode != 0
        assert f"pid {first.process.pid}" in second.stderr
        assert first.process.poll() is None
    finally:
        assert stop(first) == 0
    # Released when the holder stops: the data dir can be served again.
    again = serve(tmp_path / "florist")
    assert stop(again) == 0
