"""What one fork of the launcher pool costs, with its heap on small pages and then on huge pages, in one process.

This process becomes what the pool is before it forks (the pool's imports, its warm-up round, gc.freeze), forks
`forks` children that exit at once, moves its heap to huge pages as an idle pool does (launch/huge_pages.py), and
forks as many again. Each figure is the median over the forks: the parent's wall time and CPU time inside
os.fork(), and a child's own CPU (its exit unmaps what the fork mapped). Alternating is not possible here (the
heap cannot go back to small pages), so small pages go first, both in the same process a second apart.

python -c "from bench import fork_cost; fork_cost.fork_cost()"
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import statistics
import time

from bench.stats import record
from bench.warm import rollup_kib


def _forks(count: int) -> dict[str, float]:
    walls, cpus, children = [], [], []
    for _ in range(count):
        began, cpu = time.perf_counter(), time.process_time()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
        _, _, usage = os.wait4(pid, 0)
        children.append(usage.ru_utime + usage.ru_stime)
    return {
        "fork_wall_ms": statistics.median(walls) * 1e3,
        "fork_cpu_ms": statistics.median(cpus) * 1e3,
        "child_cpu_ms": statistics.median(children) * 1e3,
    }


def fork_cost(forks: int = 30) -> dict[str, float]:
    from florist_grpc.fl.warm_up import warm_up
    from florist_grpc.launch.huge_pages import HeapCollapse
    from florist_grpc.launch.pool_process import PRELOAD

    for module in PRELOAD:
        importlib.import_module(module)
    warm_up()
    gc.freeze()
    anon_before = rollup_kib("self", "Anonymous")
    small = _forks(forks)
    heap = HeapCollapse(0.0)
    began, cpu = time.perf_counter(), time.process_time()
    while not heap.step():
        pass
    moved_s, moved_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    huge = _forks(forks)
    line = {
        **{f"small_{key}": value for key, value in small.items()},
        **{f"huge_{key}": value for key, value in huge.items()},
        "anonymous_mib": anon_before / 1024,
        "anonymous_growth_mib": (rollup_kib("self", "Anonymous") - anon_before) / 1024,
        "huge_mib": rollup_kib("self", "AnonHugePages") / 1024,
        "move_s": moved_s,
        "move_cpu_s": moved_cpu_s,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m": os.getloadavg()[0],
    }
    record("fork_cost", forks=forks, **line)
    return line
