"""A tiny model plugin for florist-grpc (the contract of DESIGN.md "Model plugins")."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def tiny_net(input_shape: tuple[int, ...], num_classes: int, width: int = 8, **_: Any) -> nn.Module:
    """Tiny two-layer net from a plugin package, any sample shape.

    The first docstring line is the catalog description.
    """
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(), nn.Linear(width, num_classes)
    )


tiny_net.config_schema = {  # type: ignore[attr-defined]
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"width": {"type": "integer", "minimum": 1, "maximum": 512, "description": "Hidden width."}},
    "additionalProperties": False,
}
