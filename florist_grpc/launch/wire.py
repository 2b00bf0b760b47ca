"""Plain JSON values <-> google.protobuf.Struct on the agent session (both ends use these)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from florist_grpc.domain.portable_json import whole_numbers


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The Struct as plain JSON; integral numbers are ints again (a Struct carries only doubles, and shapes,
    counts and labels are integers)."""
    value: dict[str, Any] = whole_numbers(json_format.MessageToDict(struct))
    return value
