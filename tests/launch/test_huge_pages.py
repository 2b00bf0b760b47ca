"""The launcher pool moves its heap to huge pages once idle: only dense private anonymous ranges, only when idle,
and a pool that did still forks children that run and report their exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from florist_grpc.config import Timeouts
from florist_grpc.domain.model import Exit
from florist_grpc.fl.run_config import run_environment
from florist_grpc.launch.huge_pages import HeapCollapse, heap_ranges, huge_page_size, idle_seconds
from florist_grpc.launch.pool import LauncherPool
from tests.helpers import wait_for

SAMPLE = "tests.launch.sample_process"
MIB = 1 << 20


def test_only_writable_private_anonymous_mappings_and_the_heap_give_aligned_ranges() -> None:
    maps = "\n".join(
        [
            "00400000-00a00000 rw-p 00000000 00:00 0                          [heap]",  # 6 MiB: 3 ranges
            "7f0000100000-7f0000700000 rw-p 00000000 00:00 0 ",  # unaligned ends: 0x200000 and 0x400000 only
            "7f0001000000-7f0001400000 rw-p 00001000 08:01 1234       /usr/lib/libtorch_cpu.so",  # a file's
            "7f0002000000-7f0002400000 r--p 00000000 00:00 0 ",  # not writable
            "7f0003000000-7f0003400000 rw-s 00000000 00:01 9          /dev/zero (deleted)",  # shared
            "7f0004000000-7f0004100000 rw-p 00000000 00:00 0 ",  # 1 MiB: no whole aligned range
            "7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0                  [stack]",
        ]
    )
    assert heap_ranges(maps, 2 * MIB) == [
        0x400000,
        0x600000,
        0x800000,
        0x7F0000200000,
        0x7F0000400000,
    ]


def test_nothing_is_read_or_collapsed_before_the_process_has_been_idle_long_enough() -> None:
    now = [100.0]
    heap = HeapCollapse(10.0, clock=lambda: now[0])
    assert heap.wait() == 10.0
    now[0] = 105.0
    heap.busy()  # a child or a launch: the idle time starts again
    now[0] = 114.0
    assert heap.wait() == pytest.approx(1.0)
    assert heap.step() is False and heap.wait() == pytest.approx(1.0)  # still due at 115
    assert (heap.collapsed, heap.sparse, heap.refused) == (0, 0, {})
    assert HeapCollapse(-1.0).wait() is None and HeapCollapse(-1.0).step() is False  # never


def test_the_idle_setting_and_the_systems_huge_page_setting_are_read_without_failing(tmp_path: Path) -> None:
    assert [idle_seconds(text) for text in ("10", "0", "2.5")] == [10.0, 0.0, 2.5]
    assert [idle_seconds(text) for text in ("-1", "never", "inf", "nan", "")] == [-1.0] * 5
    (tmp_path / "enabled").write_text("always [madvise] never\n")
    (tmp_path / "hpage_pmd_size").write_text("2097152\n")
    assert huge_page_size(tmp_path) == (2 * MIB, "")
    # MADV_COLLAPSE itself ignores this setting: an operator's "never" is honoured by reading it.
    (tmp_path / "enabled").write_text("always madvise [never]\n")
    assert huge_page_size(tmp_path) == (0, "transparent huge pages are set to never")
    size, why = huge_page_size(tmp_path / "absent")
    assert size == 0 and why.startswith("no transparent huge pages here")


# Runs in its own small interpreter: the whole heap of the test process is not this test's to move. The region is
# mapped with MAP_NORESERVE so that it stays a mapping of its own (not merged with the interpreter's arenas). It is
# given no advice: marked MADV_HUGEPAGE, khugepaged may fill and collapse the sparse range on its own (seen once in
# ten runs), which is the kernel's doing, not the pass's.
DENSE_AND_SPARSE = """
import ctypes, json, mmap
from florist_grpc.launch.huge_pages import HeapCollapse, huge_page_size
size, why = huge_page_size()
if not size:
    print(json.dumps({"collapsed": 0, "summary": why}))
    raise SystemExit
region = mmap.mmap(-1, 5 * size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
dense = -(-base // size) * size
sparse = dense + 2 * size
for offset in range(0, size, mmap.PAGESIZE):
    region[dense - base + offset] = 7
for offset in range(0, size // 4, mmap.PAGESIZE):
    region[sparse - base + offset] = 7
heap = HeapCollapse(0.0)
while not heap.step():
    pass
mapping = {}
for line in open("/proc/self/smaps"):
    fields = line.split()
    if not fields[0].endswith(":"):
        low, high = (int(bound, 16) for bound in fields[0].split("-"))
        inside = low <= dense < high
    elif inside and fields[0] in ("Size:", "AnonHugePages:"):
        mapping[fields[0]] = int(fields[1])
written = [region[dense - base + 4096], region[sparse - base]]
print(json.dumps({"collapsed": heap.collapsed, "summary": heap.summary(), "size_kib": mapping["Size:"],
                  "huge_kib": mapping["AnonHugePages:"], "bytes": written, "page_kib": size // 1024}))
"""


def test_a_dense_range_is_moved_to_a_huge_page_and_a_sparse_one_is_left() -> None:
    if "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        pytest.skip("transparent huge pages are set to always: faults and khugepaged fill sparse ranges themselves")
    out = subprocess.run(
        [sys.executable, "-c", DENSE_AND_SPARSE], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    if result["collapsed"] == 0:
        pytest.skip(f"no range moved to huge pages here (MADV_COLLAPSE needs Linux 6.1): {result['summary']}")
    assert result["size_kib"] == 5 * result["page_kib"]  # the region alone
    # The dense range became one huge page with its contents; the sparse one (a quarter resident) did not, so the
    # region holds exactly one: a sparse range would have grown by its holes.
    assert result["huge_kib"] == result["page_kib"]
    assert result["bytes"] == [7, 7]


def test_an_idle_pool_moves_its_heap_to_huge_pages_still_forks_and_counts_idle_time_from_its_last_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = 1.5
    monkeypatch.setenv("FLORIST_POOL_HUGE_PAGES_AFTER_SECONDS", str(idle))
    log = tmp_path / "pool.log"
    pool = LauncherPool(log, Timeouts(), extra_launchable=SAMPLE)
    pool.start()
    try:
        assert pool.wait_ready(120)
        passes = re.compile(r"launcher pool: heap (?:on huge pages: (\d+) MiB|left on small pages).*")
        first = wait_for(lambda: passes.search(log.read_text()), 120, "a pass once the pool is idle")
        if not first[1] or first[1] == "0":
            pytest.skip(f"no range moved to huge pages here (MADV_COLLAPSE needs Linux 6.1): {first[0]}")
        assert pool.pid is not None
        rollup = Path(f"/proc/{pool.pid}/smaps_rollup").read_text()
        huge_kib = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("AnonHugePages:"))
        assert huge_kib * 2 >= int(first[1]) * 1024, rollup  # what it said it moved is there (bar its own writes)
        # Forking from huge pages: the children are what they were. This one outlives the idle time.
        env = run_environment(json.dumps({"print": "after", "ready": True, "wait": True, "exit": 4}))
        child = pool.launch(SAMPLE, [], tmp_path / "child.log", env=env)
        assert asyncio.run(child.ready.wait()) is True
        held = time.monotonic()
        wait_for(lambda: time.monotonic() - held > idle + 0.5, 10, "the child to outlive the idle time")
        os.kill(child.ref.pid, signal.SIGUSR1)
        assert child.wait_exit(30) == Exit(4)
        ended = time.monotonic()
        assert "after" in (tmp_path / "child.log").read_text()
        # Idle again, counted from the child's end (not from its launch): then another pass mends what the pool's
        # own writes split while it forked.
        wait_for(lambda: len(passes.findall(log.read_text())) >= 2, 60, "a second pass")
        assert time.monotonic() - ended >= idle - 0.5
    finally:
        pool.stop()
