"""RFC 7386 JSON Merge Patch: the diff between two reports, and its application.

Reports are JSON objects whose values are never null (FL4Health reporters write no nulls), so a merge patch
represents every change between two of them exactly.
"""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, and immutable leaves): what copy.deepcopy gives, faster."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    return value if kind in _LEAVES else copy.deepcopy(value)


def diff(old: JsonObject, new: JsonObject) -> JsonObject:
    """The merge patch that turns `old` into `new` ({} when they are equal)."""
    patch: JsonObject = {key: None for key in old if key not in new}
    add_changes(patch, old, new)
    return patch


def add_changes(patch: JsonObject, old: JsonObject, new: JsonObject) -> None:
    """Add to `patch` what `new`'s members change in `old` (diff without the removals: keys of `old` that `new`
    lacks). A change is a copy: the patch shares nothing with `new`."""
    missing = _MISSING
    for key, value in new.items():
        before = old.get(key, missing)
        if isinstance(value, dict) and isinstance(before, dict):
            if value is not before:
                sub = diff(before, value)
                if sub:
                    patch[key] = sub
        # 1, 1.0 and True compare equal in Python but are different JSON values, also inside lists.
        elif type(value) is not type(before) or value != before or (type(value) is list and not _same(value, before)):
            patch[key] = copy_json(value)


def _same(a: Any, b: Any) -> bool:
    """Whether two JSON values that Python finds equal are the same JSON (types compared all the way down)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is list:
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    if kind is dict:
        return all(_same(item, b[key]) for key, item in a.items())
    return True


_MISSING = object()
_LEAVES = frozenset({str, int, float, bool, type(None)})


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
