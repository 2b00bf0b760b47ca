"""RFC 7386 JSON Merge Patch: the diff between two reports, and its application.

Reports are JSON objects whose values are never null (FL4Health reporters write no nulls), so a merge patch
represents every change between two of them exactly.
"""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]


def _same(a: Any, b: Any) -> bool:
    # 1, 1.0 and True compare equal in Python but are different JSON values.
    return type(a) is type(b) and a == b


def diff(old: JsonObject, new: JsonObject) -> JsonObject:
    """The merge patch that turns `old` into `new` ({} when they are equal)."""
    patch: JsonObject = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = diff(old[key], value)
            if sub:
                patch[key] = sub
        elif not _same(old[key], value):
            patch[key] = copy.deepcopy(value)
    return patch


def apply(target: Any, patch: Any) -> Any:
    """`target` with `patch` merged in (RFC 7386 section 2); `target` is not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonObject = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result
