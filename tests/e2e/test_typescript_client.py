"""The typed TypeScript client (clients/typescript, connect-node's gRPC transport) against `florist-grpc serve`:
a real job to success over TLS with a token, the details of an invalid job, a wrong token, and a stream resumed
across a crash of the control plane."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from tests.api.test_tls import issue, pem
from tests.e2e.conftest import Served, serve, stop

CLIENT_MAIN = Path(__file__).resolve().parents[2] / "clients" / "typescript" / "dist" / "main.js"
ADMIN_TOKEN = "ts-client-admin-token"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the TypeScript client cannot run")


def job_body(data_paths: list[str], rounds: int) -> dict[str, Any]:
    return {
        "model": "MLP",
        "strategy": "FEDAVG",
        "optimizer": "SGD",
        "client_type": "FEDAVG",
        "server_config": {"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1},
        "clients": [{"data_path": p} for p in data_paths],
    }


def client_command(address: str, job_file: Path, *extra: str) -> list[str]:
    assert NODE is not None
    if not CLIENT_MAIN.exists():
        pytest.fail(f"{CLIENT_MAIN} is not built: run `make lint` (npm ci && npm run build in clients/typescript)")
    return [NODE, str(CLIENT_MAIN), "--address", address, "--job-file", str(job_file), *extra]


def run_client(
    address: str, job_file: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        client_command(address, job_file, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def write_job(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """`serve` with TLS (a throwaway CA) and an auth file holding one admin token; yields it and the CA file."""
    directory = tmp_path_factory.mktemp("ts-secured")
    ca = issue("florist test CA", None)
    files = {"ca": pem(*ca), "server": pem(*issue("localhost", ca))}
    for name, (cert, key) in files.items():
        (directory / f"{name}.crt").write_bytes(cert)
        (directory / f"{name}.key").write_bytes(key)
    auth_file = directory / "tokens"
    auth_file.write_text(f"admin {hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()} ts-client\n")
    served = serve(
        directory / "florist",
        *("--tls-cert", str(directory / "server.crt"), "--tls-key", str(directory / "server.key")),
        *("--auth-file", str(auth_file)),
    )
    yield served, directory / "ca.crt"
    stop(served)


def test_a_job_runs_to_success_over_tls_with_a_token_one_line_per_round(
    secured: tuple[Served, Path], demo_data: list[str], tmp_path: Path
) -> None:
    served, ca = secured
    job_file = write_job(tmp_path / "job.json", {"job": job_body(demo_data, rounds=2)})
    # The token through FLORIST_TOKEN, the CA through the flag: both ways in are used.
    result = run_client(served.address, job_file, "--tls-ca", str(ca), env={"FLORIST_TOKEN": ADMIN_TOKEN}, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "final state: JOB_STATE_FINISHED_SUCCESSFULLY"
    rounds = re.findall(r"^round (\d+): val loss \S+, val accuracy \S+$", result.stdout, re.MULTILINE)
    assert rounds == ["1", "2"], result.stdout
    assert "job state: JOB_STATE_IN_PROGRESS" in result.stdout


def test_an_invalid_job_prints_invalid_argument_and_each_field_violation(
    secured: tuple[Served, Path], tmp_path: Path
) -> None:
    served, ca = secured
    body = job_body(["/nonexistent/c0.pt"], rounds=0)
    body["model"] = "NO_SUCH_MODEL"
    job_file = write_job(tmp_path / "job.json", body)
    result = run_client(served.address, job_file, "--tls-ca", str(ca), "--token", ADMIN_TOKEN)
    assert result.returncode != 0
    assert result.stderr.startswith("INVALID_ARGUMENT: "), result.stderr
    violations = dict(re.findall(r"^  (job\.[\w.\[\]]+): (.+)$", result.stderr, re.MULTILINE))
    assert "NO_SUCH_MODEL" in violations["job.model"]
    assert "job.server_config.n_server_rounds" in violations, result.stderr
    assert "final state" not in result.stdout


def test_a_wrong_token_is_refused_with_unauthenticated(secured: tuple[Served, Path], tmp_path: Path) -> None:
    served, ca = secured
    job_file = write_job(tmp_path / "job.json", job_body(["/data/c0.pt"], rounds=1))
    result = run_client(served.address, job_file, env={"FLORIST_TLS_CA": str(ca), "FLORIST_TOKEN": "not-the-token"})
    assert result.returncode != 0
    assert result.stderr.startswith("UNAUTHENTICATED: "), result.stderr


def test_an_unknown_field_in_the_job_file_is_an_error_naming_it(tmp_path: Path) -> None:
    body = {"job": {**job_body(["/data/c0.pt"], rounds=1), "n_rounds": 3}}
    job_file = write_job(tmp_path / "job.json", body)
    result = run_client("127.0.0.1:1", job_file)  # refused before any connection is made
    assert result.returncode != 0
    assert '"n_rounds" is unknown' in result.stderr, result.stderr


def test_the_stream_resumes_after_a_crash_of_the_control_plane_without_gap_or_duplicate(
    tmp_path: Path, demo_data: list[str]
) -> None:
    data_dir = tmp_path / "florist"
    rounds = 40
    first = serve(data_dir)
    port = first.address.rsplit(":", 1)[1]
    job_file = write_job(tmp_path / "job.json", job_body(demo_data, rounds=rounds))
    client = subprocess.Popen(
        client_command(first.address, job_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    again: Served | None = None
    job_id = ""
    try:
        assert client.stdout is not None
        seen: list[str] = []
        for line in client.stdout:  # until the client has printed round 1: the stream is live
            seen.append(line)
            job_id = line.split()[-1] if line.startswith("created job ") else job_id
            if line.startswith("round 1:"):
                break
        assert any(line.startswith("round 1:") for line in seen), "".join(seen)
        first.process.send_signal(signal.SIGKILL)  # drops the stream mid-job; FL processes and Redis live on
        first.process.wait(10)
        again = serve(data_dir, "--port", port)  # re-attaches the job; the client reconnects to it
        out, err = client.communicate(timeout=240)
        stdout = "".join(seen) + out
        assert client.returncode == 0, stdout + err
        assert stdout.strip().splitlines()[-1] == "final state: JOB_STATE_FINISHED_SUCCESSFULLY"
        # The client checks sequences itself (a gap or duplicate is an error); every round is printed once.
        printed = re.findall(r"^round (\d+):", stdout, re.MULTILINE)
        assert printed == [str(n) for n in range(1, rounds + 1)], stdout
        assert "resuming after sequence" in err, err
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
        if again is not None:
            if job_id:  # the job may still run if the test failed: end its FL processes
                with grpc.insecure_channel(again.address) as channel, contextlib.suppress(grpc.RpcError):
                    # FAILED_PRECONDITION when it had ended, as it has when the test passed.
                    training_grpc.TrainingServiceStub(channel).StopTraining(
                        pb.StopTrainingRequest(job_id=job_id), timeout=30
                    )
            stop(again)
        elif first.process.poll() is None:
            stop(first)
