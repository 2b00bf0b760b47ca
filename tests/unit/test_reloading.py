"""Files read again when they change (florist_grpc/reloading.py): a change is noticed by inode, size or mtime; a
file that does not read keeps the previous content with one error per state; `force` reads whatever the look says;
a renewed certificate must be its key's (tls.read_tls)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from florist_grpc.reloading import Reloadable
from florist_grpc.testing.certificates import issue_pki, renew_server
from florist_grpc.tls_files import read_tls


def number(path: Path) -> int:
    text = path.read_text()
    if not text.strip().isdigit():
        raise ValueError(f"{path}: not a number")
    return int(text)


def test_a_change_is_read_a_broken_file_keeps_the_old_content_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "n"
    path.write_text("1")
    seen: list[tuple[int, int]] = []
    reloadable = Reloadable("n", [path], lambda: number(path))
    reloadable.on_change.append(lambda old, new: seen.append((old, new)))
    assert not reloadable.check() and reloadable.current == 1  # nothing changed
    path.write_text("22")
    assert reloadable.check() and reloadable.current == 22 and seen == [(1, 22)]
    path.write_text("oops")
    assert not reloadable.check() and not reloadable.check()
    assert reloadable.current == 22
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"n: not reloaded, the previous one stays in use: {path}: not a number"]
    path.write_text("333")
    assert reloadable.check() and seen == [(1, 22), (22, 333)]


def test_force_reads_an_edit_that_looks_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "n"
    path.write_text("4")
    reloadable = Reloadable("n", [path], lambda: number(path))
    before = os.stat(path)
    with open(path, "r+") as same:
        same.write("5")  # same inode, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not reloadable.check() and reloadable.current == 4
    assert reloadable.check(force=True) and reloadable.current == 5


def test_a_certificate_caught_without_its_new_key_is_refused(tmp_path: Path) -> None:
    pki = issue_pki(tmp_path)
    old_key = pki.key.read_bytes()
    renew_server(pki)
    pki.key.write_bytes(old_key)  # the new certificate, the old key: a renewal caught in between
    with pytest.raises(ValueError, match="is not the key of the certificate"):
        read_tls(pki.cert, pki.key, None)
    with pytest.raises(ValueError, match="not a CA certificate"):
        read_tls(None, None, pki.key)
    renew_server(pki)
    assert read_tls(pki.cert, pki.key, pki.ca).ca == pki.ca.read_bytes()
