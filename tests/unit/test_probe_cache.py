"""Summaries of local data files are kept while the file stays the same (jobs/probe_cache.py)."""

from __future__ import annotations

import os
from pathlib import Path

from florist_grpc.jobs.probe_cache import ProbeCache, Summary


class CountingProbe:
    def __init__(self) -> None:
        self.probed: list[str] = []

    def __call__(self, files: list[tuple[str, str]]) -> list[Summary]:
        self.probed += [path for path, _ in files]
        return [{"path": path, "size": Path(path).stat().st_size if Path(path).exists() else None} for path, _ in files]


def test_an_unchanged_file_is_not_probed_again_and_a_changed_one_is(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    cache, probe = ProbeCache(), CountingProbe()
    files = [(str(a), ""), (str(b), "")]
    first = cache.probe(files, probe)
    assert cache.probe(files, probe) == first and probe.probed == [str(a), str(b)]
    a.write_bytes(b"changed")  # another size and modification time
    os.utime(b, ns=(1, 1))  # the same bytes, touched: another modification time
    again = cache.probe(files, probe)
    assert probe.probed[2:] == [str(a), str(b)] and again[0]["size"] == 7


def test_a_file_gone_is_probed_again_and_the_same_path_with_another_label_column_is_another_file(
    tmp_path: Path,
) -> None:
    a = tmp_path / "a.csv"
    a.write_bytes(b"x,label\n1,0\n")
    cache, probe = ProbeCache(), CountingProbe()
    cache.probe([(str(a), "")], probe)
    cache.probe([(str(a), "y")], probe)
    a.unlink()
    assert cache.probe([(str(a), "")], probe) == [{"path": str(a), "size": None}]
    assert probe.probed == [str(a)] * 3


def test_the_oldest_summaries_are_dropped_beyond_the_size(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.pt" for i in range(3)]
    for path in paths:
        path.write_bytes(b"x")
    cache, probe = ProbeCache(size=2), CountingProbe()
    for path in paths:
        cache.probe([(str(path), "")], probe)
    cache.probe([(str(paths[0]), "")], probe)  # dropped: probed again
    cache.probe([(str(paths[2]), "")], probe)  # kept
    assert probe.probed == [str(p) for p in paths] + [str(paths[0])]
