"""`train watch`, `plot`, `logs` and the connection flags (TLS, token), against live control planes running
simulated jobs (real Redis, listener, store and gRPC; reporters instead of Flower processes)."""

from __future__ import annotations

import csv
import hashlib
import json
import struct
from pathlib import Path

import pytest

from florist_grpc.cli.events import stream_events
from florist_grpc.cli.options import Connection
from florist_grpc.domain.model import JobState
from florist_grpc.net import free_service_port
from florist_grpc.testing.certificates import issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.testing.simulation import create_running, finish, play_rounds
from florist_grpc.tls_files import TLSConfig
from tests.cli.conftest import Invoke
from tests.helpers import TERMINAL, wait_for


def finished_job(plane: ControlPlaneThread, rounds: int = 3, state: JobState = JobState.FINISHED_SUCCESSFULLY) -> str:
    job = create_running(plane.plane, 2)
    play_rounds(job, rounds)
    finish(plane.plane, job, state)
    return job.job_id


def test_watch_prints_rounds_a_final_table_and_exits_0_on_success(cli: Invoke, plane: ControlPlaneThread) -> None:
    job_id = finished_job(plane)
    result = cli("train", "watch", job_id, "--address", plane.address)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"watching job {job_id}" in out
    assert "round 1/3: val loss 1.0000" in out and "round 3/3: val loss 0.3333" in out
    assert "ROUND  VAL LOSS" in out and "CLIENT 1 ACC" in out
    assert "final state: JOB_STATE_FINISHED_SUCCESSFULLY" in out


def test_watch_exits_1_and_shows_the_error_of_a_failed_job(cli: Invoke, plane: ControlPlaneThread) -> None:
    job = create_running(plane.plane, 2)
    play_rounds(job, 1)
    plane.plane.follower.end(job.job_id, JobState.FINISHED_WITH_ERROR, "client 1 ran out of memory").result(30)
    result = cli("train", "watch", job.job_id, "--address", plane.address)
    assert result.exit_code == 1
    assert "job is FINISHED_WITH_ERROR: client 1 ran out of memory" in result.stdout
    assert "final state: JOB_STATE_FINISHED_WITH_ERROR" in result.stdout


def test_watch_json_is_one_event_per_line(cli: Invoke, plane: ControlPlaneThread) -> None:
    job_id = finished_job(plane, rounds=2)
    result = cli("train", "watch", job_id, "--address", plane.address, "--output", "json")
    assert result.exit_code == 0
    events = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["job_state"] == "JOB_STATE_FINISHED_SUCCESSFULLY"


def test_plot_writes_a_png_and_the_numbers_as_csv(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    job_id = finished_job(plane)
    png, table = tmp_path / "curves.png", tmp_path / "curves.csv"
    result = cli("plot", job_id, "--out", png, "--csv", table, "--address", plane.address)
    assert result.exit_code == 0, result.stderr
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width >= 800 and height >= 300
    assert 10_000 < png.stat().st_size < 2_000_000
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 3 * 3  # 3 rounds x (aggregated + 2 clients)
    # The simulated server reports no training loss (as FL4Health's): the clients' mean, (1/1 + 1/2) / 2.
    first = {"round": "1", "source": "aggregated", "val_loss": "1.0", "val_accuracy": "0.05", "train_loss": "0.75"}
    assert rows[0] == first
    assert rows[4]["source"] == "client0" and float(rows[4]["val_accuracy"]) == pytest.approx(0.1)
    assert float(rows[5]["train_loss"]) == pytest.approx(1 / 3)  # client1, round 2: 1 / (n + i)


def test_plot_of_a_job_without_rounds_is_an_error(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    job = create_running(plane.plane, 2)
    result = cli("plot", job.job_id, "--out", tmp_path / "x.png", "--address", plane.address)
    assert result.exit_code == 1 and "has no rounds to plot yet" in result.stderr
    assert not (tmp_path / "x.png").exists()


def saved_get_job(plane: ControlPlaneThread, job_id: str, path: Path) -> Path:
    """What `grpcurl ... JobService/GetJob > path` saves: the response as JSON with the proto's field names."""
    from google.protobuf import json_format

    from florist_grpc.proto.florist.v1 import job_service_pb2, job_service_pb2_grpc

    stub = job_service_pb2_grpc.JobServiceStub(Connection(plane.address, "", None).channel())
    response = stub.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10)
    path.write_text(json_format.MessageToJson(response, preserving_proto_field_name=True))
    return path


def test_plot_from_a_saved_get_job_response_draws_the_same_numbers_without_a_server(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    job_id = finished_job(plane)
    saved = saved_get_job(plane, job_id, tmp_path / "job.json")
    served = cli("plot", job_id, "--out", tmp_path / "a.png", "--csv", tmp_path / "a.csv", "--address", plane.address)
    assert served.exit_code == 0, served.stderr
    nowhere = f"localhost:{free_service_port()}"  # nothing listens there: --from must not call the server
    offline = cli(
        "plot",
        "--from",
        saved,
        "--out",
        tmp_path / "b.png",
        "--csv",
        tmp_path / "b.csv",
        "--address",
        nowhere,
    )
    assert offline.exit_code == 0, offline.stderr
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with_id = cli("plot", job_id, "--from", saved, "--out", tmp_path / "c.png", "--address", nowhere)
    assert with_id.exit_code == 0, with_id.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "give the job's id, or --from FILE"),
        ('{"job": {"id": "j1"}', ("--from",), "invalid JSON"),
        ('{"job": {"id": "j1", "colour": 3}}', ("--from",), "not a job"),
        ("[1, 2]", ("--from",), "expected a GetJob response"),
        ('{"job": {"id": "j1"}}', ("other-id", "--from"), "holds job j1, not other-id"),
        ('{"job": {"id": "j1"}}', ("--from",), "job j1 has no rounds to plot yet"),
    ],
)
def test_plot_from_a_file_that_is_not_a_job_with_rounds_is_a_one_line_error(
    cli: Invoke, tmp_path: Path, content: str | None, args: tuple[str, ...], message: str
) -> None:
    saved = tmp_path / "job.json"
    if content is not None:
        saved.write_text(content)
    result = cli("plot", *args, *((saved,) if args else ()), "--out", tmp_path / "x.png")
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_logs_of_an_unknown_job_is_not_found(cli: Invoke, plane: ControlPlaneThread) -> None:
    result = cli("logs", "nope", "--address", plane.address)
    assert result.exit_code == 1 and result.stderr.startswith("error: NOT_FOUND: ")


def test_client_commands_speak_tls_with_the_ca_given(cli: Invoke, tmp_path: Path) -> None:
    pki = issue_pki(tmp_path)
    tls_plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key))
    try:
        address = f"localhost:{tls_plane.plane.port}"
        job_id = finished_job(tls_plane, rounds=1)
        assert cli("catalog", "--address", address, "--tls-ca", pki.ca).exit_code == 0
        watched = cli("train", "watch", job_id, "--address", address, env={"FLORIST_TLS_CA": str(pki.ca)})
        assert watched.exit_code == 0 and "final state: JOB_STATE_FINISHED_SUCCESSFULLY" in watched.stdout
        plaintext = cli("catalog", "--address", address)
        assert plaintext.exit_code == 1 and "UNAVAILABLE" in plaintext.stderr and "--tls-ca" in plaintext.stderr
    finally:
        tls_plane.stop()


def test_client_commands_send_the_token(cli: Invoke, tmp_path: Path) -> None:
    auth = tmp_path / "tokens"
    auth.write_text(f"admin {hashlib.sha256(b'sesame').hexdigest()} ops\n")
    secured = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=auth)
    try:
        denied = cli("job", "list", "--address", secured.address)
        assert denied.exit_code == 1 and denied.stderr.startswith("error: UNAUTHENTICATED: ")
        allowed = cli("job", "list", "--address", secured.address, env={"FLORIST_TOKEN": "sesame"})
        assert allowed.exit_code == 0, allowed.stderr
    finally:
        secured.stop()


def test_a_watch_resumes_after_the_control_plane_restarts_without_gap_or_duplicate(tmp_path: Path) -> None:
    port = free_service_port()
    first = ControlPlaneThread.in_dir(tmp_path / "florist", port=port)
    job = create_running(first.plane, 2)
    play_rounds(job, 1)

    def all_stored() -> bool:
        # By content, not by count: reports are snapshots, so how many events they make depends on coalescing.
        stored = first.plane.store.get_job(job.job_id)
        assert stored is not None
        reports = [stored.server_metrics, *(c.metrics for c in stored.clients)]
        return reports == [r.report for r in job.reporters.values()]

    reconnects: list[int] = []
    try:
        wait_for(all_stored, 30, "every report stored")
        events = stream_events(
            Connection(f"127.0.0.1:{port}"), job.job_id, on_reconnect=lambda after, e: reconnects.append(after)
        )
        seen = [next(events) for _ in range(3)]
    finally:
        first.stop()  # also when the above failed: a plane left running would skew later tests (threads, ports)
    # The restarted plane adopts the job and ends it: its processes (simulated reporters) are not there to find.
    second = ControlPlaneThread.in_dir(tmp_path / "florist", port=port)
    try:
        seen += list(events)
    finally:
        second.stop()
    assert reconnects and reconnects[0] >= 3
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].job_state in TERMINAL
