"""Hostile job files: each is refused with one line (`error: ...`, exit 2), in bounded time and memory.

The CLI runs as a child process whose address space is capped (RLIMIT_AS), so a file that would expand without
bound fails the test with a MemoryError instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from florist_grpc.cli.jobfile import MAX_DEPTH, MAX_FILE_BYTES

# Far above what `job create` needs (about 500 MB of address space, 50 MB resident), far below a runaway parse.
ADDRESS_SPACE = 1 << 30
SECONDS = 5.0
NOWHERE = "127.0.0.1:1"  # nothing listens: a file that parses fails later, UNAVAILABLE, exit 1

BILLION_LAUGHS = """\
model: MLP
strategy: FEDAVG
optimizer: SGD
client_type: FEDAVG
clients: [{data_path: /d/c0.pt}]
server_config:
  n_server_rounds: 1
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


# Caps its own address space, then becomes `florist-grpc ARGS...` (a preexec_fn would fork a test process that
# runs gRPC threads, which gRPC does not survive).
CAPPED = (
    f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE})); "
    "os.execv(sys.executable, [sys.executable, '-m', 'florist_grpc', *sys.argv[1:]])"
)


def create(path: Path | str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`florist-grpc job create --file PATH` with its memory capped; the result and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CAPPED, "job", "create", "--file", str(path), "--address", NOWHERE],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done, time.monotonic() - started


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr[-2000:]
    for word in words:
        assert word in done.stderr, done.stderr


def test_a_billion_laughs_yaml_is_refused_at_its_first_alias_within_seconds(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    done, seconds = create(path)
    assert_refused(done, f"{path}:9:", "alias")
    assert seconds < SECONDS


def test_any_yaml_alias_is_refused_even_a_small_merge_key(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {model: MLP}\njob:\n  <<: *base\n  strategy: FEDAVG\n")
    assert_refused(create(path)[0], f"{path}:3:", "alias")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000),
        ("deep-after-a-string.json", '{"a": "]]]", "b": ' + "{" * 40_000),
        ("deep.yaml", "job: " + "[" * 100_000 + "]" * 100_000),
        ("deep-block.yaml", "".join(f"{'  ' * i}k:\n" for i in range(200))),
        ("deep-flow.yaml", "job: " + "[" * 100 + "]" * 100),
    ],
)
def test_deep_nesting_is_refused_before_it_is_parsed(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    done, seconds = create(path)
    assert_refused(done, f"nested deeper than {MAX_DEPTH} levels")
    assert "Traceback" not in done.stderr and seconds < SECONDS


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:  # 200 MB, sparse: it costs no disk
        f.truncate(200 << 20)
    done, seconds = create(path)
    assert_refused(done, f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
    assert seconds < SECONDS


def test_an_endless_file_is_refused(tmp_path: Path) -> None:
    done, seconds = create("/dev/zero")
    assert_refused(done, "larger than")
    assert seconds < SECONDS


def test_files_within_the_bounds_are_parsed(tmp_path: Path) -> None:
    """At the depth and size limits the file is read and sent (nothing listens: UNAVAILABLE, exit 1)."""
    nested: object = 1
    for _ in range(MAX_DEPTH - 2):  # the file's object and its `server_config` are two levels
        nested = {"x": nested}
    brackets = "[{" * 1000  # inside a string: no nesting
    body = {"model": brackets, "server_config": nested, "clients": [{"data_path": "/d/c0.pt"}]}
    text = json.dumps(body)
    padded = text + " " * (MAX_FILE_BYTES - len(text))
    for name, content in [("deep.json", text), ("big.json", padded), ("deep.yaml", text)]:
        path = tmp_path / name
        path.write_text(content)
        done, _ = create(path)
        assert done.returncode == 1 and done.stderr.startswith("error: UNAVAILABLE"), (name, done.stderr[-2000:])


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("digits.json", '{"model": "MLP", "server_config": {"n": ' + "9" * 5_000 + "}}", ["invalid JSON"]),
        ("digits.yaml", "model: MLP\nserver_config: {n: " + "9" * 5_000 + "}\n", ["invalid YAML"]),
        ("clients.json", '{"model": "MLP", "clients": 5}', ["clients"]),
        ("binary.json", '{"model": "\xff"}', []),
    ],
)
def test_malformed_values_are_one_line_never_a_traceback(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1") if name == "binary.json" else text.encode())
    done, _ = create(path)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {path}"), done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and all(w in done.stderr for w in words), done.stderr
