"""Fail when pyproject.toml and the lock files disagree (`make lint`).

pyproject.toml keeps ranges for people who install the library; the lock files pin what `make`, CI and the
Dockerfile install. They disagree when a requirement is missing from a lock, when a pin falls outside its range
(someone edited pyproject.toml and forgot `make lock`), when a pin has no hash, or when the runtime lock and the
dev lock pin one package at two versions. Reading the files is enough: no resolver runs, so this takes
milliseconds and needs no network.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_lock(path: Path) -> tuple[dict[str, Version], list[str]]:
    """name -> pinned version, and the names of pins that carry no hash."""
    pins: dict[str, Version] = {}
    unhashed: list[str] = []
    # A requirement spans its line and the `--hash` continuation lines after it.
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = PIN.match(block)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        pins[name] = Version(match.group(2))
        if "--hash=sha256:" not in block:
            unhashed.append(name)
    return pins, unhashed


def problems_of(lock: Path, requirements: list[str]) -> list[str]:
    if not lock.exists():
        return [f"{lock.name} is missing: run `make lock`"]
    pins, unhashed = read_lock(lock)
    found = [f"{lock.name}: {name} has no --hash (run `make lock`)" for name in unhashed]
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{lock.name}: {requirement.name} is in pyproject.toml but not locked (run `make lock`)")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(
                f"{lock.name}: {requirement.name}=={pins[name]} is outside pyproject.toml's "
                f"'{requirement.specifier}' (run `make lock`)"
            )
    return found


def main(root: Path = ROOT) -> int:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    dev = list(project["optional-dependencies"]["dev"])
    run_lock, dev_lock = root / "requirements.lock", root / "requirements-dev.lock"
    problems = problems_of(run_lock, runtime) + problems_of(dev_lock, runtime + dev)
    if run_lock.exists() and dev_lock.exists():
        run_pins, dev_pins = read_lock(run_lock)[0], read_lock(dev_lock)[0]
        for name, version in sorted(run_pins.items()):
            if dev_pins.get(name) != version:
                problems.append(
                    f"{run_lock.name} pins {name}=={version} but {dev_lock.name} has "
                    f"{dev_pins.get(name) or 'nothing'} (run `make lock`)"
                )
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    # An optional argument names another checkout (the tests check copies they break on purpose).
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
