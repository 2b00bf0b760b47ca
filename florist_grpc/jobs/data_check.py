"""The clients' data, checked before anything is launched: usable files, one sample shape, labels in range.

`check_data` judges each local client's path by its metadata first (`fl.data_file.checked_file`: a regular file,
under one of serve's --data-root directories when it has any), probes the files that pass through `python -m
florist_grpc.fl.probe` and agent-run clients through `remote_probe`; `decide_shape` -- a pure function -- turns
the summaries into the model's sizes or a FAILED_PRECONDITION naming each bad client and file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from florist_grpc.domain.catalog import ModelSpec
from florist_grpc.domain.errors import FailedPrecondition, FieldViolation
from florist_grpc.domain.model import Job
from florist_grpc.fl.data_file import checked_file
from florist_grpc.jobs.probe_cache import ProbeCache
from florist_grpc.launch.pool import LauncherPool
from florist_grpc.launch.probe import ProbeFailed, probe_files

Summary = dict[str, Any]
RemoteProbe = Callable[[Job, int], Awaitable[Summary | None]]


@dataclass(frozen=True)
class DataShape:
    """The sizes the job's model is built with, and where each local client's checked file really is."""

    input_shape: tuple[int, ...]
    num_classes: int
    # Local client index -> its data file as checked (symlinks resolved): what the client is launched to open.
    resolved_paths: dict[int, str] = field(default_factory=dict)


def _field(index: int) -> str:
    return f"job.clients[{index}].data_path"


def decide_shape(spec: ModelSpec, summaries: dict[int, Summary | None]) -> DataShape:
    """The model's sizes from the clients' summaries (None = that client's data could not be read from here).

    Fixed sizes of the catalog entry win and every client must fit them; open ones come from the data: every
    client must have the same sample shape, and the number of classes is the largest label + 1.
    """
    violations: list[FieldViolation] = []
    usable: dict[int, Summary] = {}
    for index, summary in sorted(summaries.items()):
        if summary is None:
            continue
        if summary["problems"]:
            violations += [FieldViolation(_field(index), p) for p in summary["problems"]]
        else:
            usable[index] = summary
    input_shape = spec.input_shape
    reference = "the model " + spec.name
    if not input_shape and usable:
        first = min(usable)
        input_shape, reference = tuple(usable[first]["input_shape"]), f"client {first}"
    for index, summary in usable.items():
        shape = tuple(summary["input_shape"])
        if spec.sample_rank and len(shape) != spec.sample_rank:
            violations.append(
                FieldViolation(
                    _field(index),
                    f"data file {summary['path']}: model {spec.name} needs samples of {spec.sample_rank} "
                    f"dimensions, client {index}'s are shaped {list(shape)}",
                )
            )
        elif shape != input_shape:
            violations.append(
                FieldViolation(
                    _field(index),
                    f"data file {summary['path']}: samples of client {index} are shaped {list(shape)}, "
                    f"{reference} needs {list(input_shape)}",
                )
            )
    num_classes = spec.num_classes or max((int(s["label_max"]) + 1 for s in usable.values()), default=0)
    if spec.num_classes:
        violations += [
            FieldViolation(
                _field(index),
                f"data file {s['path']}: labels must be in 0..{spec.num_classes - 1} for model {spec.name}, "
                f"client {index} has {s['label_max']}",
            )
            for index, s in usable.items()
            if int(s["label_max"]) >= spec.num_classes
        ]
    if not violations and (not input_shape or num_classes < 2):
        unknown = [i for i, s in summaries.items() if s is None]
        if unknown:
            violations += [
                FieldViolation(
                    _field(i),
                    f"model {spec.name} takes its sizes from the data, and client {i}'s data cannot be read "
                    "before launch (it runs on an agent)",
                )
                for i in unknown
            ]
        elif num_classes < 2:
            violations.append(FieldViolation("job.clients", f"the labels hold {num_classes} class(es); need 2+"))
    if violations:
        raise FailedPrecondition("the clients' data cannot be trained on; nothing was launched", violations=violations)
    return DataShape(input_shape, num_classes)


def refused(path: str, problem: str) -> Summary:
    """The summary of a file refused by its metadata alone (never opened)."""
    return {"path": path, "n": None, "input_shape": None, "label_min": None, "label_max": None, "problems": [problem]}


def _as_named(summary: Summary, real: str, path: str) -> Summary:
    """A summary of the resolved file `real` told with the path the job names it by (messages use its words)."""
    problems = [problem.replace(real, path) for problem in summary["problems"]]
    return {**summary, "path": path, "problems": problems}


async def check_data(
    job: Job,
    spec: ModelSpec,
    timeout: float,
    remote_probe: RemoteProbe | None = None,
    pool: LauncherPool | None = None,
    roots: Sequence[Path] = (),
    cache: ProbeCache | None = None,
) -> DataShape:
    """Probe every client's data and decide the model's sizes (FAILED_PRECONDITION naming each bad file).

    A local client's path is first judged by its metadata (fl/data_file.py): under one of `roots` (`serve
    --data-root`; none = anywhere) with symlinks resolved, and a regular file. Only files that pass are probed,
    so a named pipe or a device is refused at once and nothing outside the roots is ever opened. With a `cache`,
    a file unchanged since it was last probed keeps its summary (jobs/probe_cache.py).
    """
    local = [(i, c) for i, c in enumerate(job.clients) if not c.agent]
    checked = await asyncio.to_thread(lambda: [checked_file(c.data_path, roots) for _, c in local])
    summaries: dict[int, Summary | None] = {
        i: refused(c.data_path, problem) for (i, c), (_, problem) in zip(local, checked, strict=True) if problem
    }
    # From here on, the resolved path: the probe and the client read the file that was judged.
    resolved = {i: real for (i, _), (real, problem) in zip(local, checked, strict=True) if not problem}
    readable = [(i, c) for i, c in local if i in resolved]
    files = [(resolved[i], c.label_column) for i, c in readable]

    def probe(some: list[tuple[str, str]]) -> list[Summary]:
        return probe_files(some, timeout, pool)

    try:
        found = await asyncio.to_thread(cache.probe, files, probe) if cache else await asyncio.to_thread(probe, files)
    except ProbeFailed as exc:
        raise FailedPrecondition(f"the clients' data could not be checked: {exc}") from exc
    summaries |= {i: _as_named(s, resolved[i], c.data_path) for (i, c), s in zip(readable, found, strict=True)}
    for i, client in enumerate(job.clients):
        if client.agent:
            summaries[i] = await remote_probe(job, i) if remote_probe is not None else None
    return replace(decide_shape(spec, summaries), resolved_paths=resolved)


class DataChecker:
    """`check_data` shared by concurrent starts of one job: one probe, every caller gets its outcome."""

    def __init__(
        self,
        timeout: float,
        remote_probe: RemoteProbe | None = None,
        pool: LauncherPool | None = None,
        roots: Sequence[Path] = (),
    ) -> None:
        self._timeout = timeout
        self._remote_probe = remote_probe
        self._pool = pool  # local probes are forked from it when it is up
        self._roots = tuple(roots)  # serve --data-root: local data files must lie under one of them
        self._running: dict[str, asyncio.Future[DataShape]] = {}
        self._probed = ProbeCache()  # a queued job's files, probed when it was queued, are not read twice

    async def check(self, job: Job, spec: ModelSpec) -> DataShape:
        running = self._running.get(job.id)
        if running is None:
            checking = check_data(job, spec, self._timeout, self._remote_probe, self._pool, self._roots, self._probed)
            running = asyncio.ensure_future(checking)
            self._running[job.id] = running
            running.add_done_callback(lambda done: self._ended(job.id, done))
        return await asyncio.shield(running)

    def _ended(self, job_id: str, done: asyncio.Future[DataShape]) -> None:
        self._running.pop(job_id, None)
        # Every caller may have gone (a deadline): the outcome is then nobody's, and asyncio would log it as a
        # "Task exception was never retrieved" error. Callers still waiting get it from the shield as before.
        if not done.cancelled():
            done.exception()
