"""Job.tracking's rules (CreateJob) and the names MLflow takes."""

from __future__ import annotations

import pytest

from florist_grpc.domain.tracking import (
    MAX_KEY,
    MAX_TAGS,
    TrackingConfig,
    mlflow_safe,
    name_problem,
    tracking_violations,
)


def fields(tracking: TrackingConfig) -> dict[str, str]:
    return {v.field: v.description for v in tracking_violations(tracking)}


def test_an_empty_tracking_config_is_valid() -> None:
    assert fields(TrackingConfig()) == {}


def test_an_experiment_and_tags_within_mlflows_rules_are_valid() -> None:
    assert fields(TrackingConfig("vision team: digits", {"team": "vision", "dataset/version": "8x8 v2"})) == {}


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "1-250 characters"),
        ("x" * (MAX_KEY + 1), "1-250 characters"),
        ("cost $", "may hold only"),
        ("a//b", "plain path"),
        ("../up", "plain path"),
        ("/root", "plain path"),
        ("mlflow.runName", "reserved"),
        ("florist.job_id", "reserved"),
    ],
)
def test_a_bad_tag_key_is_named_by_its_key(key: str, problem: str) -> None:
    found = fields(TrackingConfig(tags={key: "v"}))
    [(field, description)] = found.items()
    assert field.startswith("job.tracking.tags[") and problem in description


def test_the_field_path_quotes_the_key_as_json() -> None:
    assert list(fields(TrackingConfig(tags={"a$": "v"}))) == ['job.tracking.tags["a$"]']


def test_tag_values_and_the_experiment_are_bounded() -> None:
    found = fields(TrackingConfig("e" * 501, {"k": "v" * 5001, "n": "a\0b"}))
    assert set(found) == {"job.tracking.experiment", 'job.tracking.tags["k"]', 'job.tracking.tags["n"]'}
    assert "control characters" in fields(TrackingConfig("line\nbreak"))["job.tracking.experiment"]


def test_too_many_tags_is_one_violation() -> None:
    tags = {f"t{i}": "v" for i in range(MAX_TAGS + 1)}
    assert fields(TrackingConfig(tags=tags)) == {"job.tracking.tags": f"at most {MAX_TAGS} tags"}


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("val - loss - aggregated", "val - loss - aggregated"),
        ("client0/train.acc $", "client0/train.acc _"),
        ("accuracy (top-1)", "accuracy _top-1_"),
        ("client0/a//b", "client0_a__b"),
        ("..", "_.."),
        ("", "_"),
        ("ümlaut:ratio", "ümlaut:ratio"),
    ],
)
def test_mlflow_safe_names_are_names_mlflow_takes(name: str, safe: str) -> None:
    assert mlflow_safe(name) == safe
    assert name_problem(safe) is None


def test_mlflow_safe_names_are_cut_to_mlflows_key_length() -> None:
    assert len(mlflow_safe("x" * 1000)) == MAX_KEY
