"""Percentiles and result lines, printed the same way by every benchmark."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

RESULTS: list[dict[str, Any]] = []


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values, default=math.nan),
    }


def record(bench: str, **fields: Any) -> None:
    """Print one result line and keep it for bench/results.json."""
    RESULTS.append({"bench": bench, **fields})
    shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
    print(f"{bench:<10} {shown}", flush=True)


def dump(path: str) -> None:
    with open(path, "w") as f:
        json.dump(RESULTS, f, indent=1)
