"""What a round logs in a tracker, read as the CLI reads reports: our layout and FL4Health's."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

from florist_grpc.domain.model import JobState, MetricsEvent, Source, SourceKind
from florist_grpc.export.mlflow_run import run_params, run_tags
from florist_grpc.export.points import JobReports, round_values, touched_rounds
from tests.unit.test_validation import make_job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_our_layout_the_aggregated_metrics_keep_their_report_names() -> None:
    server = {
        "rounds": {
            "1": {
                "val - loss - aggregated": 0.5,
                "fit_round_metrics": {"train - loss": 0.7, "train - prediction - accuracy": 0.6},
                "eval_round_metrics_aggregated": {"val - prediction - accuracy": 0.8},
                "fit_round_time_elapsed": 3,  # a timing, not a metric
            }
        }
    }
    assert round_values({"server": server}, 0, 1) == {
        "val - loss - aggregated": 0.5,
        "train - loss": 0.7,
        "val - prediction - accuracy": 0.8,
        "train - prediction - accuracy": 0.6,
    }


def test_fl4health_layout_the_training_loss_is_the_clients_mean_once_the_fit_is_over() -> None:
    clients = [{"rounds": {"2": {"fit_round_losses": {"backward": loss}}}} for loss in (1.0, 3.0)]
    reports = {"client0": clients[0], "client1": clients[1], "server": {"rounds": {"2": {"fit_round_start": "s"}}}}
    assert "train - loss" not in round_values(reports, 2, 2)  # the fit is not over: no mean of whoever reported
    reports["server"] = {"rounds": {"2": {"fit_round_end": "e"}}}
    assert round_values(reports, 2, 2)["train - loss"] == 2.0


def test_a_clients_round_carries_its_index_and_every_number_it_reported() -> None:
    client = {
        "rounds": {
            "1": {
                "eval_round_loss": {"checkpoint": 0.4},
                "eval_round_metrics": {"val - prediction - accuracy": 0.9, "note": "text is not a metric"},
                "fit_round_losses": {"backward": 0.3, "penalty_loss": 0.01},
                "fit_round_metrics": {"train - prediction - accuracy": 0.85},
            }
        }
    }
    assert round_values({"client1": client}, 2, 1) == {
        "client1/val - loss": 0.4,
        "client1/train - loss": 0.3,
        "client1/val - prediction - accuracy": 0.9,
        "client1/train - prediction - accuracy": 0.85,
        "client1/penalty_loss": 0.01,
    }


def test_non_finite_values_reported_as_strings_are_numbers() -> None:
    server = {"rounds": {"4": {"val - loss - aggregated": "NaN"}}}
    value = round_values({"server": server}, 0, 4)["val - loss - aggregated"]
    assert math.isnan(value)


def test_an_event_touches_the_rounds_its_patch_names() -> None:
    reports = JobReports(n_clients=1)
    patch = {"rounds": {"3": {"eval_round_loss": 0.25}, "4": {"round": 4}}, "shutdown": "x"}
    event = MetricsEvent("j", 1, NOW, Source(SourceKind.CLIENT, 0, "u"), patch, JobState.IN_PROGRESS)
    assert reports.apply(event) == {3, 4} == touched_rounds(patch)
    [point] = reports.points({3}, NOW)
    assert (point.name, point.step, point.value) == ("client0/val - loss", 3, 0.25)


def test_params_flatten_the_configs_and_tags_find_the_job_again() -> None:
    job = make_job(model_config={"hidden": [64, 32]})
    params = run_params(job)
    assert params["server_config.n_server_rounds"] == "3"
    assert params["model_config.hidden"] == "[64, 32]"
    assert params["clients"] == "1"
    tags = run_tags(replace(job, project="vision", owner="ann"))
    assert (tags["florist.job_id"], tags["florist.project"], tags["florist.owner"]) == (job.id, "vision", "ann")
    assert "florist.owner" not in run_tags(replace(job, owner=""))  # a job stored before owners existed
