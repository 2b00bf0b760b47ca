"""RFC 7386 merge patches between reports: applying diff(old, new) to old gives new, exactly."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from florist_grpc.domain.merge_patch import apply, diff


def test_diff_of_equal_reports_is_empty() -> None:
    report = {"a": 1, "rounds": {"1": {"x": 0.5}}}
    assert diff(report, copy.deepcopy(report)) == {}


def test_diff_holds_only_the_change() -> None:
    old = {"host_type": "server", "rounds": {"1": {"fit_round_start": "t1"}}}
    new = {"host_type": "server", "rounds": {"1": {"fit_round_start": "t1", "fit_round_end": "t2"}}}
    assert diff(old, new) == {"rounds": {"1": {"fit_round_end": "t2"}}}


def test_removed_keys_become_null_and_apply_removes_them() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}}
    new = {"b": {"c": 2}}
    patch = diff(old, new)
    assert patch == {"a": None, "b": {"d": None}}
    assert apply(old, patch) == new


def test_type_changes_are_replacements() -> None:
    old: dict[str, Any] = {"a": 1, "b": {"x": 1}, "c": True, "d": 1}
    new: dict[str, Any] = {"a": {"now": "object"}, "b": 5, "c": 1, "d": 1.0}
    assert apply(old, diff(old, new)) == new
    assert type(apply(old, diff(old, new))["d"]) is float


def test_type_changes_inside_lists_are_replacements() -> None:
    # Python finds [True] == [1.0] and [{"a": 1}] == [{"a": 1.0}]: the JSON texts differ.
    assert diff({"a": [True], "b": [{"c": 1}]}, {"a": [1.0], "b": [{"c": 1.0}]}) == {
        "a": [1.0],
        "b": [{"c": 1.0}],
    }
    assert diff({"a": [[1, {"c": "x"}]]}, {"a": [[1, {"c": "x"}]]}) == {}


def test_metric_names_with_spaces_dots_and_dollars_round_trip() -> None:
    old: dict[str, Any] = {}
    new = {"rounds": {"1": {"val - prediction - accuracy": 0.1 + 0.2, "a.b": 1e-300, "$set": {"$x.y": -0.0}}}}
    patch = json.loads(json.dumps(diff(old, new)))  # through JSON, as it is stored
    assert apply(old, patch) == new


def test_apply_does_not_modify_its_input() -> None:
    old = {"a": {"b": 1}}
    apply(old, {"a": {"b": 2}})
    assert old == {"a": {"b": 1}}


def random_report(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = ["a", "b.c", "$d", "e f", "1", "2"]
    out: dict[str, Any] = {}
    for key in rng.sample(keys, rng.randint(0, len(keys))):
        kind = rng.random()
        if kind < 0.3 and depth < 3:
            out[key] = random_report(rng, depth + 1)
        elif kind < 0.5:
            out[key] = rng.random()
        elif kind < 0.6:
            out[key] = [rng.randint(0, 3), "x"]
        elif kind < 0.8:
            out[key] = rng.randint(-5, 5)
        else:
            out[key] = rng.choice(["s", True, False])
    return out


def test_a_sequence_of_patches_rebuilds_every_report_exactly() -> None:
    rng = random.Random(7)
    rebuilt: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    for _ in range(500):
        report = random_report(rng)
        rebuilt = apply(rebuilt, json.loads(json.dumps(diff(previous, report))))
        assert rebuilt == report
        previous = report
