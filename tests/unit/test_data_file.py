"""A data file's problems are named by their kind and never quote the file; anything but a regular file is refused
by its kind, without blocking, whether it is judged by its metadata (fl/data_file.py) or opened (fl/data.py)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from florist_grpc.fl.data import DataError, load_split
from florist_grpc.fl.data_file import file_problem
from florist_grpc.fl.probe import probe

MARKER = "TOPSECRET" + uuid.uuid4().hex


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_csv_value(path: Path) -> None:
    path.write_text(f"a,label\n1,0\n{MARKER},1\n")


def write_csv_header(path: Path) -> None:
    path.write_text(f"{MARKER},x\n1,2\n")


def write_csv_binary(path: Path) -> None:
    path.write_bytes(b"\xff\xfe" + MARKER.encode())


def write_npz_names(path: Path) -> None:
    np.savez(path, **{MARKER: np.zeros(3)})


def write_npz_record(path: Path) -> None:
    records = np.zeros(4, dtype=[(MARKER, "<f4")])
    np.savez(path, x=records, y=np.zeros(4, dtype=np.int64))


def write_npz_bad_header(path: Path) -> None:
    header = f"{{'descr': '{MARKER}', 'fortran_order': False, 'shape': (2,), }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", member)
        archive.writestr("y.npy", npy_bytes(np.zeros(2, dtype=np.int64)))


def write_npz_of_text(path: Path) -> None:
    path.write_text(MARKER)


def write_pt_global(path: Path) -> None:
    # A pickle naming a global the weights-only unpickler refuses (its error quotes the name).
    path.write_bytes(b"\x80\x02c" + MARKER.encode() + b"\n" + MARKER.encode() + b"\nq\x00.")


def write_pt_text(path: Path) -> None:
    path.write_text(MARKER)


@pytest.mark.parametrize(
    ("name", "write", "says"),
    [
        ("value.csv", write_csv_value, "line 3 has a value that is not a number (column 1)"),
        ("header.csv", write_csv_header, "has no label column 'label' (its header has 2 columns)"),
        ("binary.csv", write_csv_binary, "is not UTF-8 text"),
        ("names.npz", write_npz_names, "must hold arrays 'x' and 'y'; it has no 'x' and no 'y'"),
        ("record.npz", write_npz_record, "x must hold real numbers, not raw or structured records"),
        ("header.npz", write_npz_bad_header, "its arrays 'x' and 'y' are not .npy arrays"),
        ("text.npz", write_npz_of_text, "not an .npz archive"),
        ("global.pt", write_pt_global, "not a torch.save file of tensors"),
        ("text.pt", write_pt_text, "not a torch.save file of tensors"),
    ],
)
def test_what_is_wrong_with_a_file_is_said_without_quoting_it(
    tmp_path: Path, name: str, write: Callable[[Path], None], says: str
) -> None:
    write(tmp_path / f"secret-{name}")
    path = tmp_path / name  # the user names a symlink to it
    path.symlink_to(tmp_path / f"secret-{name}")
    summary = probe(str(path))
    assert any(says in p for p in summary["problems"]), summary["problems"]
    assert MARKER not in repr(summary)
    with pytest.raises(DataError) as raised:
        load_split(path, (1,), 2)
    # An FL client's log (which StreamLogs serves) shows the error with its chain: nothing of the file in it.
    assert MARKER not in "".join(traceback.format_exception(raised.value))


def test_the_environment_of_the_reader_is_not_quoted(tmp_path: Path) -> None:
    # As the control plane runs it: a probe process, whose /proc/self/environ holds the secret.
    paths = []
    for suffix in (".csv", ".npz", ".pt"):
        paths.append(tmp_path / f"environ{suffix}")
        paths[-1].symlink_to("/proc/self/environ")
    done = subprocess.run(
        [sys.executable, "-m", "florist_grpc.fl.probe", json.dumps([[str(p), ""] for p in paths])],
        env={**os.environ, "FLORIST_TEST_SECRET": MARKER},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    summaries = json.loads(done.stdout)
    assert [bool(s["problems"]) for s in summaries] == [True, True, True]
    assert MARKER not in done.stdout + done.stderr


@pytest.fixture
def specials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A named pipe, a character device, a directory and a listening Unix socket, each behind a `.pt` name."""
    # A short directory: a Unix socket's path is limited to 107 bytes.
    directory = tmp_path_factory.mktemp("s")
    files = {kind: directory / f"{kind}.pt" for kind in ("named pipe", "character device", "directory", "socket")}
    os.mkfifo(files["named pipe"])
    files["character device"].symlink_to("/dev/null")
    files["directory"].mkdir()
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(files["socket"]))
        listening.listen()
        yield files


def test_files_that_are_not_regular_are_refused_by_their_kind_by_metadata(specials: dict[str, Path]) -> None:
    for kind, path in specials.items():
        assert f"data file {path} is a {kind}" in (file_problem(str(path)) or ""), kind


def test_opening_a_file_that_is_not_regular_refuses_it_without_blocking(specials: dict[str, Path]) -> None:
    # The reader is the last line: a file swapped for a named pipe after the control plane's check.
    summaries: dict[str, dict[str, object]] = {}

    def read_all() -> None:
        summaries.update({kind: probe(str(path)) for kind, path in specials.items()})

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "a probe blocked on a special file"
    for kind, path in specials.items():
        [problem] = summaries[kind]["problems"]  # type: ignore[misc]
        assert problem.startswith(f"data file {path} is a {kind}") and problem.endswith(", not a regular file")


def test_data_roots_confine_paths_with_symlinks_resolved(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
        torch.save({"x": torch.zeros(4, 2), "y": torch.zeros(4, dtype=torch.long)}, root / "c.pt")
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"")
    (roots[0] / "escape.pt").symlink_to(outside)
    (tmp_path / "a-twin").mkdir()
    (tmp_path / "a-twin" / "c.pt").write_bytes(b"")
    (tmp_path / "into-b.pt").symlink_to(roots[1] / "c.pt")
    resolved = [r.resolve() for r in roots]
    for fine in (roots[0] / "c.pt", roots[1] / "c.pt", tmp_path / "into-b.pt", roots[0] / ".." / "b" / "c.pt"):
        assert file_problem(str(fine), resolved) is None, fine
    for refused in (outside, roots[0] / "escape.pt", tmp_path / "a-twin" / "c.pt", tmp_path / "missing.pt"):
        assert "is not under any --data-root" in (file_problem(str(refused), resolved) or ""), refused
    assert file_problem(str(outside)) is None  # without roots: any absolute regular file
    assert file_problem("relative/c.pt") == "data file relative/c.pt is not an absolute path"
