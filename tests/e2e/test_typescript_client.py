"""The typed TypeScript client (clients/typescript, connect-node's gRPC transport) against `florist-grpc serve`:
a real job to success over TLS with a token (its model downloaded and its learning curves drawn), the details of
an invalid job, a wrong token, and a stream resumed across a crash of the control plane."""

from __future__ import annotations

import contextlib
import csv
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
import numpy as np
import pytest
from matplotlib import image
from safetensors.torch import load_file

from florist_grpc.cli.models import download_model
from florist_grpc.cli.plot import CSV_COLUMNS, csv_rows
from florist_grpc.fl.models import build_model
from florist_grpc.progress import JobProgress
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.testing.certificates import issue_pki
from tests.e2e.conftest import Served, serve, stop

ROOT = Path(__file__).resolve().parents[2]
CLIENT_MAIN = ROOT / "clients" / "typescript" / "dist" / "main.js"
ADMIN_TOKEN = "ts-client-admin-token"
NODE = shutil.which("node")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
    pki = issue_pki(directory)
    auth_file = directory / "tokens"
    auth_file.write_text(f"admin {hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()} ts-client\n")
    served = serve(
        directory / "florist",
        *("--tls-cert", str(pki.cert), "--tls-key", str(pki.key)),
        *("--auth-file", str(auth_file)),
    )
    yield served, pki.ca
    stop(served)


def test_a_job_runs_to_success_over_tls_with_a_token_and_leaves_its_model_and_learning_curves(
    secured: tuple[Served, Path], demo_data: list[str], tmp_path: Path
) -> None:
    served, ca = secured
    job_file = write_job(tmp_path / "job.json", {"job": job_body(demo_data, rounds=2)})
    model, plot, table = tmp_path / "model.safetensors", tmp_path / "curves.png", tmp_path / "curves.csv"
    outputs = ("--model-out", str(model), "--plot-out", str(plot), "--csv-out", str(table))
    # The token through FLORIST_TOKEN, the CA through the flag: both ways in are used.
    result = run_client(
        served.address, job_file, "--tls-ca", str(ca), *outputs, env={"FLORIST_TOKEN": ADMIN_TOKEN}, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "final state: JOB_STATE_FINISHED_SUCCESSFULLY"
    rounds = re.findall(r"^round (\d+): val loss \S+, val accuracy \S+$", result.stdout, re.MULTILINE)
    assert rounds == ["1", "2"], result.stdout
    assert "job state: JOB_STATE_IN_PROGRESS" in result.stdout
    job_id = re.findall(r"^created job (\S+)$", result.stdout, re.MULTILINE)[0]
    with grpc.secure_channel(served.address, grpc.ssl_channel_credentials(ca.read_bytes())) as channel:
        metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        artifact = download_model(channel, metadata, job_id, 0, tmp_path / "by-python.safetensors")
        request = job_service_pb2.GetJobRequest(job_id=job_id)
        job = job_service_pb2_grpc.JobServiceStub(channel).GetJob(request, metadata=metadata, timeout=30).job
    assert_model_is_the_final_one(model, artifact, result.stdout)
    assert_png_shows_curves(plot)
    assert_csv_matches_florist_plot(table, job)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")], "temporary files are cleaned up"


def assert_model_is_the_final_one(model: Path, artifact: pb.ModelArtifact, stdout: str) -> None:
    """The file is the server's final model: its size and SHA-256, and it loads into the catalog's MLP."""
    content = model.read_bytes()
    assert hashlib.sha256(content).hexdigest() == artifact.sha256 and len(content) == artifact.size_bytes
    assert artifact.round == 2
    assert f"model: {model} ({artifact.size_bytes} bytes, sha256 {artifact.sha256}, round 2)" in stdout, stdout
    module = build_model(artifact.model, list(artifact.input_shape), artifact.num_classes, dict(artifact.model_config))
    tensors = load_file(str(model))
    assert set(tensors) == set(module.state_dict())
    module.load_state_dict(tensors)  # strict: every tensor's name and shape fits the model


def assert_png_shows_curves(plot: Path) -> None:
    """A real PNG, chart-sized, with the lines and text of a chart on it (not a blank canvas)."""
    content = plot.read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert content[12:16] == b"IHDR"  # the first chunk, right after the signature and its length
    width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    assert 800 <= width <= 6000 and 300 <= height <= 3000 and width > height, (width, height)
    pixels = image.imread(str(plot))  # decodes it: a truncated or malformed PNG fails here
    assert pixels.shape[:2] == (height, width)
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > 20, "anti-aliased lines and text in several colours"
    inked = np.any(pixels[..., :3] < 0.9, axis=-1).mean()
    assert 0.005 < inked < 0.5, f"{inked:.3f} of the pixels are drawn on"


def assert_csv_matches_florist_plot(table: Path, job: job_pb2.Job) -> None:
    """The CSV has the columns and numbers of `florist-grpc plot --csv` for the same job."""
    with table.open(newline="") as f:
        written = list(csv.DictReader(f))
    progress = JobProgress.from_reports(job)
    expected = csv_rows(progress.rounds_table(), progress.n_clients)
    assert list(written[0]) == list(CSV_COLUMNS)
    assert [(r["round"], r["source"]) for r in written] == [(str(r["round"]), r["source"]) for r in expected]
    assert [r["source"] for r in written[:3]] == ["aggregated", "client0", "client1"]
    for got, want in zip(written, expected, strict=True):
        for column in ("val_loss", "val_accuracy", "train_loss"):
            value = want[column]
            assert (got[column] == "") == (value == ""), (column, got, want)
            if value != "":
                assert float(got[column]) == pytest.approx(float(str(value)), rel=1e-12), (column, got, want)
    assert all(r["val_loss"] and r["val_accuracy"] for r in written), "every source evaluated every round"


def readme_command() -> str:
    """The README's `node clients/typescript/dist/main.js ...` command (section "Other languages"), on one line."""
    section = (ROOT / "README.md").read_text().split("\n## Other languages\n", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0].replace("\\\n", " ")
    return next(line for line in block.splitlines() if line.startswith("node "))


def test_the_readme_command_trains_the_example_job_and_leaves_its_model_and_curves(
    served: Served, tmp_path: Path
) -> None:
    if not CLIENT_MAIN.exists():
        pytest.fail(f"{CLIENT_MAIN} is not built: run `make lint` (npm ci && npm run build in clients/typescript)")
    for name in ("clients", "examples"):  # the command's paths as written, from a scratch directory for its outputs
        (tmp_path / name).symlink_to(ROOT / name)
    command = readme_command()
    assert "localhost:50051" in command, command
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command.replace("localhost:50051", served.address)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "final state: JOB_STATE_FINISHED_SUCCESSFULLY"
    assert "learning curves: curves.png (3 rounds)" in done.stdout, done.stdout
    assert load_file(str(tmp_path / "model.safetensors")), "a model with tensors"
    assert_png_shows_curves(tmp_path / "curves.png")
    with (tmp_path / "curves.csv").open(newline="") as f:
        rows = [(r["round"], r["source"]) for r in csv.DictReader(f)]
    assert rows == [(str(n), s) for n in (1, 2, 3) for s in ("aggregated", "client0", "client1")]


def test_a_stopped_job_leaves_its_curves_so_far_and_no_model(
    served: Served, demo_data: list[str], tmp_path: Path
) -> None:
    job_file = write_job(tmp_path / "job.json", job_body(demo_data, rounds=1000))
    model, plot = tmp_path / "model.safetensors", tmp_path / "curves.png"
    command = client_command(served.address, job_file, "--model-out", str(model), "--plot-out", str(plot))
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        seen: list[str] = []
        for line in client.stdout:  # until round 1 is printed: there is a curve to draw
            seen.append(line)
            if line.startswith("round 1:"):
                break
        job_id = next(line.split()[-1] for line in seen if line.startswith("created job "))
        with grpc.insecure_channel(served.address) as channel:
            training_grpc.TrainingServiceStub(channel).StopTraining(pb.StopTrainingRequest(job_id=job_id), timeout=60)
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert client.returncode == 1, out + err
    lines = out.strip().splitlines()
    assert lines[-1] == "final state: JOB_STATE_CANCELLED"
    assert "model: not downloaded, the job did not succeed" in lines, out
    assert any(re.fullmatch(rf"learning curves: {re.escape(str(plot))} \(\d+ rounds\)", line) for line in lines), out
    assert not model.exists()
    assert_png_shows_curves(plot)


def test_an_output_in_a_missing_directory_is_refused_before_any_job_is_created(tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "job.json", job_body(["/data/c0.pt"], rounds=1))
    missing = tmp_path / "no-such-dir" / "model.safetensors"
    result = run_client("127.0.0.1:1", job_file, "--model-out", str(missing))  # nothing listens: no job is made
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"--model-out {missing}: cannot write there: directory {missing.parent} does not exist"
    ), result.stderr
    assert "created job" not in result.stdout


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
    # Unbuffered bytes: readline() then reads no further than its line, so what the client printed after round 1 (in
    # the same write when one event carries two rounds) is left for communicate(), not lost in a read-ahead buffer.
    client = subprocess.Popen(
        client_command(first.address, job_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    again: Served | None = None
    job_id = ""
    try:
        assert client.stdout is not None
        seen: list[str] = []
        for raw in iter(client.stdout.readline, b""):  # until the client has printed round 1: the stream is live
            line = raw.decode()
            seen.append(line)
            job_id = line.split()[-1] if line.startswith("created job ") else job_id
            if line.startswith("round 1:"):
                break
        assert any(line.startswith("round 1:") for line in seen), "".join(seen)
        first.process.send_signal(signal.SIGKILL)  # drops the stream mid-job; FL processes and Redis live on
        first.process.wait(10)
        again = serve(data_dir, "--port", port)  # re-attaches the job; the client reconnects to it
        out_bytes, err_bytes = client.communicate(timeout=240)
        stdout, err = "".join(seen) + out_bytes.decode(), err_bytes.decode()
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


def test_the_clients_own_unit_tests_pass() -> None:
    """clients/typescript/test: the report reading the client shares with the Python CLI, on FL4Health's layout."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--test", "test/"],
        cwd=CLIENT_MAIN.parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout
