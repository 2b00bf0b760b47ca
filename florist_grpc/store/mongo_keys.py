"""How MongoStore stores reports: metric names may hold '.', '$', '%' and NUL, which MongoDB field names may not.

Keys are escaped in stored reports, so that an update can `$set` / `$unset` only the paths a patch changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from florist_grpc.domain.model import JsonObject


def escape_key(key: str) -> str:
    if key == "":
        return "%"
    # NUL too: BSON field names cannot hold it, and an update MongoDB cannot encode would stall the event log.
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("\x00", "%00")


def unescape_key(key: str) -> str:
    if key == "%":
        return ""
    return key.replace("%00", "\x00").replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def map_keys(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {fn(k): map_keys(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_keys(v, fn) for v in value]
    return value


def patch_update(prefix: str, previous: JsonObject, patch: JsonObject) -> tuple[JsonObject, JsonObject]:
    """$set and $unset documents applying a merge patch to the stored `previous` at `prefix`, path by path.

    An object in the patch merges into an object stored at its path and replaces anything else there: the
    patch alone cannot tell which, `previous` can.
    """
    sets: JsonObject = {}
    unsets: JsonObject = {}
    for key, value in patch.items():
        path = f"{prefix}.{escape_key(key)}"
        old = previous.get(key)
        if value is None:
            unsets[path] = ""
        elif isinstance(value, dict) and isinstance(old, dict):
            sub_sets, sub_unsets = patch_update(path, old, value)
            sets.update(sub_sets)
            unsets.update(sub_unsets)
        else:
            sets[path] = map_keys(value, escape_key)
    return sets, unsets
