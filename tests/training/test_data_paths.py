"""Local clients' data paths at StartTraining: no byte of a file in the answer or the control plane's log,
anything but a regular file refused at once by its kind, and `serve --data-root` confining paths (symlinks
resolved). Each refusal is FAILED_PRECONDITION naming `job.clients[i].data_path`; the job stays NOT_STARTED."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from florist_grpc.domain.catalog import BUILTIN_MODELS
from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.model import Client, Job
from florist_grpc.jobs import data_check
from florist_grpc.jobs.data_check import DataChecker, DataShape
from florist_grpc.jobs.starting import Start
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import TERMINAL, job_message
from tests.training.test_data_check import refused

MARKER = "TOPSECRET" + uuid.uuid4().hex


@pytest.fixture
def secret_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlaneThread]:
    """A control plane whose environment (so its probes' /proc/self/environ) holds the marker."""
    monkeypatch.setenv("FLORIST_TEST_SECRET", MARKER)
    running = ControlPlaneThread.in_dir(tmp_path / "florist")
    yield running
    running.stop()


def test_a_refused_file_is_never_quoted_in_the_status_its_details_or_the_log(
    secret_plane: ControlPlaneThread, demo_data: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "secret.txt").write_text(f"a,label\n1,0\n{MARKER},1\n")
    (tmp_path / "value.csv").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "header.csv").write_text(f"{MARKER},x\n1,2\n")
    (tmp_path / "environ.csv").symlink_to("/proc/self/environ")
    paths = [demo_data[0], *(str(tmp_path / n) for n in ("value.csv", "header.csv", "environ.csv"))]
    job = secret_plane.create(job_message(paths, rounds=1))
    with pytest.raises(grpc.RpcError) as raised:
        secret_plane.start(job.id)
    call: Any = raised.value
    assert call.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(call)
    fields = [v.field for d in status.details for v in _violations(d)]
    assert fields == [f"job.clients[{i}].data_path" for i in (1, 2, 3)]
    assert MARKER not in call.details() and MARKER.encode() not in status.SerializeToString()
    assert MARKER not in caplog.text
    assert not [
        f for f in secret_plane.settings.data_dir.rglob("*") if f.is_file() and MARKER.encode() in f.read_bytes()
    ]


def _violations(detail: Any) -> list[Any]:
    from google.rpc import error_details_pb2

    bad = error_details_pb2.BadRequest()
    return list(bad.field_violations) if detail.Unpack(bad) else []


@pytest.fixture
def specials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[str, Path]]]:
    directory = tmp_path_factory.mktemp("s")  # short: a Unix socket's path is limited to 107 bytes
    files = [(kind, directory / f"{kind.split()[-1]}.pt") for kind in ("named pipe", "character device", "directory")]
    os.mkfifo(files[0][1])
    files[1][1].symlink_to("/dev/null")
    files[2][1].mkdir()
    files.append(("socket", directory / "socket.pt"))
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(files[3][1]))
        listening.listen()
        yield files


def test_files_that_are_not_regular_are_refused_at_once_naming_the_field_and_the_kind(
    plane: ControlPlaneThread, specials: list[tuple[str, Path]]
) -> None:
    began = time.monotonic()
    _, violations = refused(plane, job_message([str(p) for _, p in specials], rounds=1))
    # Refused by metadata, before any probe: a named pipe used to hold StartTraining for data_check_seconds (120 s).
    assert time.monotonic() - began < 5
    assert set(violations) == {f"job.clients[{i}].data_path" for i in range(4)}
    for i, (kind, path) in enumerate(specials):
        assert violations[f"job.clients[{i}].data_path"].startswith(f"data file {path} is a {kind}")


@pytest.fixture
def rooted(tmp_path: Path, demo_data: list[str]) -> Iterator[tuple[ControlPlaneThread, Path, Path]]:
    """A control plane with two --data-root directories, each holding one client's file."""
    roots = (tmp_path / "root-a", tmp_path / "root-b")
    for root, data in zip(roots, demo_data, strict=True):
        root.mkdir()
        (root / "c.pt").write_bytes(Path(data).read_bytes())
    running = ControlPlaneThread.in_dir(tmp_path / "florist", data_roots=tuple(r.resolve() for r in roots))
    yield running, *roots
    running.stop()


def test_with_data_roots_only_files_under_one_of_them_are_read_symlinks_resolved(
    rooted: tuple[ControlPlaneThread, Path, Path], demo_data: list[str], tmp_path: Path
) -> None:
    plane, root_a, root_b = rooted
    (root_a / "escape.pt").symlink_to(demo_data[0])  # inside a root, pointing outside
    (tmp_path / "into-b.pt").symlink_to(root_b / "c.pt")  # outside the roots, pointing inside
    paths = [root_a / "c.pt", root_b / "c.pt", Path(demo_data[1]), root_a / "escape.pt", tmp_path / "into-b.pt"]
    _, violations = refused(plane, job_message([str(p) for p in paths], rounds=1))
    # The files in either root (or resolving into one) pass the check; the others are refused unopened.
    assert set(violations) == {"job.clients[2].data_path", "job.clients[3].data_path"}
    for i in (2, 3):
        assert violations[f"job.clients[{i}].data_path"] == (
            f"data file {paths[i]} is not under any --data-root of the control plane (symlinks resolved)"
        )


@pytest.mark.slow
def test_a_local_client_opens_the_file_its_check_judged_even_if_its_symlink_is_swapped_before_launch(
    rooted: tuple[ControlPlaneThread, Path, Path], tmp_path: Path
) -> None:
    plane, root_a, root_b = rooted
    link = root_a / "link.pt"
    link.symlink_to(root_a / "c.pt")
    outside = tmp_path / "outside.pt"  # outside every root: never to be read
    outside.write_bytes(b"not a torch.save file")

    async def swap(start: Start, step: str) -> None:
        if step == "server launched":  # checked, and not launched yet
            link.unlink()
            link.symlink_to(outside)

    plane.plane.trainer.starts.step_hook = swap
    job = plane.create(job_message([str(link), str(root_b / "c.pt")], rounds=1))
    plane.start(job.id)
    final = plane.wait_state(job.id, TERMINAL, 120)
    assert final.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, final.error_message
    assert final.clients[0].data_path == str(link)  # the job keeps the path it was given


def test_a_check_that_fails_after_its_caller_left_is_not_logged_as_never_retrieved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def failing(*_: object) -> DataShape:
            entered.set()
            await release.wait()
            raise FailedPrecondition("the clients' data could not be checked")

        monkeypatch.setattr(data_check, "check_data", failing)
        checker = DataChecker(timeout=5)
        job = Job("j", "MLP", "FEDAVG", "SGD", "FEDAVG", {}, [Client(data_path="/d")], datetime.now(UTC))
        caller = asyncio.ensure_future(checker.check(job, BUILTIN_MODELS["MLP"]))
        await entered.wait()
        caller.cancel()  # the RPC's deadline passed
        await asyncio.gather(caller, return_exceptions=True)
        release.set()
        for _ in range(100):  # the check ends a few loop turns later
            if not checker._running:
                break
            await asyncio.sleep(0)
        assert not checker._running
        gc.collect()  # an unretrieved exception is reported when its task is collected

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
    assert "never retrieved" not in caplog.text
