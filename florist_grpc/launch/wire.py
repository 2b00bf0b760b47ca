"""Plain JSON values <-> google.protobuf.Struct on the agent session (both ends use these)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The Struct as plain JSON; integral numbers are ints again (a Struct carries only doubles, and shapes,
    counts and labels are integers)."""
    value: dict[str, Any] = _integers(json_format.MessageToDict(struct))
    return value


def _integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value
