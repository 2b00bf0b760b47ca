"""`serve`, `agent` and `make-data` refuse bad flags with one line and exit code 2, before starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--metrics-port", "70000"], "--metrics-port must be 0..65535, not 70000"),
        (["serve", "--port", "50999", "--metrics-port", "50999"], "--metrics-port 50999 is also --port"),
        (["serve", "--http-port", "-1"], "--http-port must be 0..65535, not -1"),
        (["serve", "--port", "50999", "--http-port", "50999"], "--http-port 50999 is also --port"),
        (["serve", "--metrics-port", "50998", "--http-port", "50998"], "--http-port 50998 is also --metrics-port"),
        (["serve", "--log-format", "xml"], "--log-format must be text or json, not 'xml'"),
        (["serve", "--tls-cert", "c.pem"], "--tls-cert and --tls-key must be given together"),
        (["serve", "--host", "0.0.0.0"], "refusing to serve without authentication on 0.0.0.0"),
        (["make-data", "--out", "x", "--model", "RESNET"], "--model must be one of CNN, MLP, MNIST_CNN, not 'RESNET'"),
        (["make-data", "--out", "x", "--dataset", "cifar"], "--dataset must be one of digits, synthetic, not 'cifar'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(cli: Invoke, tmp_path: Path, args: list[str], says: str) -> None:
    result = cli(*args, "--data-dir", tmp_path) if args[0] == "serve" else cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {says}")
    assert "Traceback" not in result.output


def test_serve_refuses_tls_files_it_cannot_use_naming_the_flags(cli: Invoke, tmp_path: Path) -> None:
    # gRPC itself would only have said that the port could not be bound.
    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = tmp_path / "bad.pem"
    result = cli("serve", "--tls-cert", bad, "--tls-key", bad, "--port", "0", "--data-dir", tmp_path / "florist")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --tls-cert {bad} and --tls-key {bad}: not a certificate and its key")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "florist").exists()  # refused before anything started


def test_an_agent_refuses_plaintext_to_a_remote_control_plane(cli: Invoke, tmp_path: Path) -> None:
    result = cli("agent", "--control-plane", "cp.example.org:50051", "--name", "site-a", "--data-root", tmp_path)
    assert result.exit_code == 2 and "--tls-ca" in result.stderr and "--insecure" in result.stderr


def test_an_agent_needs_the_control_plane_it_dials(cli: Invoke, tmp_path: Path) -> None:
    result = cli("agent", "--name", "site-a", "--data-root", tmp_path)
    assert result.exit_code == 2 and "--control-plane" in result.stderr


def test_make_data_writes_one_file_per_client(cli: Invoke, tmp_path: Path) -> None:
    result = cli("make-data", "--out", tmp_path, "--clients", "3", "--samples", "50")
    assert result.exit_code == 0
    assert result.stdout.split() == [str(tmp_path / f"client{i}.pt") for i in range(3)]


def test_make_data_json_lists_the_paths(cli: Invoke, tmp_path: Path) -> None:
    result = cli("make-data", "--out", tmp_path, "--samples", "20", "--output", "json")
    assert json.loads(result.stdout) == {"paths": [str(tmp_path / "client0.pt"), str(tmp_path / "client1.pt")]}
