"""Discover model plugins from the control plane without importing them: `python -m florist_grpc.fl.plugins`.

The answer is cached per set of installed plugin entry points, so control planes started in one process (tests,
benchmarks) pay for the subprocess once, and installing a plugin is noticed at the next start.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

from florist_grpc.domain.catalog import Catalog, ModelSpec
from florist_grpc.fl.plugins import model_entry_points, source_of
from florist_grpc.launch.process import fl_environment

log = logging.getLogger(__name__)

_cache: dict[tuple[tuple[str, str, str], ...], tuple[list[ModelSpec], list[str]]] = {}
_lock = threading.Lock()


def _describe_in_subprocess(timeout: float) -> tuple[list[ModelSpec], list[str]]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "florist_grpc.fl.plugins"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=fl_environment(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [], [f"model plugins skipped: describing them took longer than {timeout:g}s"]
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return [], [f"model plugins skipped: their description exited with code {done.returncode}: {tail}"]
    try:
        described = json.loads(done.stdout.strip().splitlines()[-1])
        specs = [
            ModelSpec(
                name=str(m["name"]),
                description=str(m["description"]),
                input_shape=tuple(int(d) for d in m["input_shape"]),
                num_classes=int(m["num_classes"]),
                config_schema=dict(m["config_schema"]),
                source=str(m["source"]),
            )
            for m in described["models"]
        ]
        return specs, [str(e) for e in described["errors"]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return [], [f"model plugins skipped: unreadable description ({exc})"]


def discover_models(timeout: float = 60.0) -> tuple[list[ModelSpec], list[str]]:
    """The installed plugins' catalog entries and why any were skipped."""
    points = model_entry_points()
    if not points:
        return [], []  # nothing to describe: no subprocess
    key = tuple((ep.name, ep.value, source_of(ep)) for ep in points)
    with _lock:
        if key not in _cache:
            _cache[key] = _describe_in_subprocess(timeout)
        return _cache[key]


def load_catalog(timeout: float = 60.0) -> Catalog:
    """The builtin models plus every usable plugin; each skipped plugin is logged, none is fatal."""
    plugins, errors = discover_models(timeout)
    catalog, skipped = Catalog.with_plugins(plugins)
    for problem in [*errors, *skipped]:
        log.warning("%s", problem)
    for spec in plugins:
        if catalog.models.get(spec.name) is spec:
            log.info("model plugin %s from %s", spec.name, spec.source)
    return catalog
