"""Model plugins: installed packages declaring entry points in group `florist_grpc.models`.

The entry point's name is the catalog name; it loads to a callable `(input_shape, num_classes, **model_config)
-> torch.nn.Module` whose docstring's first line is the description and whose optional attribute
`config_schema` is the JSON Schema of `model_config` (optional `input_shape` / `num_classes` attributes fix the
sizes instead of taking them from the data).

`python -m florist_grpc.fl.plugins` describes every plugin as one JSON document on stdout. The control plane
runs it in a subprocess (florist_grpc/launch/plugins.py) so that importing plugins -- and torch -- never happens
in its own process, and so that a plugin that crashes on import cannot take it down.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from jsonschema import Draft202012Validator

GROUP = "florist_grpc.models"
OPEN_SCHEMA: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}


def model_entry_points() -> list[EntryPoint]:
    """The installed plugins' entry points, by name (listing them imports nothing)."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def source_of(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name}=={dist.version}" if dist is not None else ep.value


def describe(ep: EntryPoint) -> dict[str, Any]:
    """One plugin as the catalog shows it; raises if the plugin is unusable (the caller skips it)."""
    make = ep.load()
    if not callable(make):
        raise TypeError(f"{ep.value} is a {type(make).__name__}, not a callable")
    doc = inspect.getdoc(make) or ""
    schema = getattr(make, "config_schema", None) or OPEN_SCHEMA
    if not isinstance(schema, dict):
        raise TypeError(f"{ep.value}.config_schema must be a dict (a JSON Schema)")
    Draft202012Validator.check_schema(schema)
    input_shape = [int(d) for d in getattr(make, "input_shape", ())]
    return {
        "name": ep.name,
        "description": doc.splitlines()[0] if doc else f"Model plugin {ep.value}.",
        "input_shape": input_shape,
        "num_classes": int(getattr(make, "num_classes", 0)),
        "config_schema": json.loads(json.dumps(schema)),  # must survive JSON (and so a protobuf Struct)
        "source": source_of(ep),
    }


def describe_all() -> dict[str, Any]:
    """{"models": [...], "errors": [...]}: a broken plugin is an error line, never the end of the others."""
    models, errors = [], []
    for ep in model_entry_points():
        try:
            models.append(describe(ep))
        except Exception as exc:
            errors.append(f"model plugin {ep.name} ({source_of(ep)}) skipped: {type(exc).__name__}: {exc}")
    return {"models": models, "errors": errors}


def load_plugin(name: str) -> Any:
    """The builder of plugin `name` (inside an FL process)."""
    for ep in model_entry_points():
        if ep.name == name:
            return ep.load()
    raise KeyError(f"no model plugin named {name!r} is installed")


def main() -> None:
    # Whatever a plugin prints while importing goes to stderr: stdout carries the one JSON document.
    with contextlib.redirect_stdout(sys.stderr):
        described = describe_all()
    json.dump(described, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
