"""The lock files against pyproject.toml: `make lint` (tools/check_lock.py) fails whenever they disagree, and
`make` installs nothing that is not in the lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_compose import ROOT

FILES = ("pyproject.toml", "requirements.lock", "requirements-dev.lock")


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_lock.py"), str(root)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_the_committed_locks_agree_with_pyproject() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stderr


def test_a_range_the_lock_falls_outside_of_fails(checkout: Path) -> None:
    edit(checkout / "pyproject.toml", '"redis>=5,<9"', '"redis>=5,<8"')
    done = check(checkout)
    assert done.returncode == 1
    assert re.search(r"requirements\.lock: redis==\S+ is outside pyproject\.toml's '<8,>=5'", done.stderr)


def test_a_dependency_added_without_make_lock_fails(checkout: Path) -> None:
    edit(checkout / "pyproject.toml", '"pyyaml>=6",', '"pyyaml>=6",\n    "no-such-package-florist>=1",')
    done = check(checkout)
    assert done.returncode == 1
    assert "no-such-package-florist is in pyproject.toml but not locked" in done.stderr


def test_a_pin_without_its_hash_fails(checkout: Path) -> None:
    lock = checkout / "requirements-dev.lock"
    lock.write_text(re.sub(r"(pytest==\S+) \\\n(\s+--hash=\S+( \\)?\n)+", r"\1\n", lock.read_text()))
    done = check(checkout)
    assert done.returncode == 1
    assert "requirements-dev.lock: pytest has no --hash" in done.stderr


def test_the_two_locks_must_pin_the_same_versions(checkout: Path) -> None:
    lock = checkout / "requirements.lock"
    version = re.search(r"^protobuf==(\S+)", lock.read_text(), re.M)
    assert version is not None
    edit(lock, f"protobuf=={version[1]}", "protobuf==6.31.0")
    done = check(checkout)
    assert done.returncode == 1
    assert f"requirements.lock pins protobuf==6.31.0 but requirements-dev.lock has {version[1]}" in done.stderr


def test_make_installs_from_the_lock_with_hashes_only() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line.strip() for line in makefile.splitlines() if "pip install" in line]
    assert installs, "the Makefile installs the venv"
    for line in installs:
        assert "--no-deps" in line, f"an install that resolves on its own: {line}"
    assert any("--require-hashes" in line and "$(LOCK_DEV)" in line for line in installs)
