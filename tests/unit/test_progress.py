"""The pure job-progress model behind `train watch`, `run`, `plot` and the demo."""

from __future__ import annotations

import math
from typing import Any

import pytest

from florist_grpc.api.convert import dict_to_struct
from florist_grpc.domain.report_layout import TrainLossSource, number
from florist_grpc.progress import JobProgress, fmt, train_loss_note
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb

T0 = 1_800_000_000.0


class Events:
    """Builds a job's events with contiguous sequences and chosen times."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(
        self, kind: int, patch: dict[str, Any], at: float, state: int = job_pb2.JOB_STATE_IN_PROGRESS, client: int = -1
    ) -> pb.MetricsEvent:
        self.sequence += 1
        event = pb.MetricsEvent(job_id="j", sequence=self.sequence, patch=dict_to_struct(patch), job_state=state)
        event.source.kind = kind
        if client >= 0:
            event.source.client_index, event.source.client_uuid = client, f"uuid{client}"
        event.time.FromNanoseconds(int(at * 1e9))
        return event


def server_round(n: int, loss: float, accuracy: float) -> dict[str, Any]:
    """FLorist's layout: the aggregated loss at round level, metric names as the clients report them."""
    return {
        "rounds": {
            str(n): {
                "fit_round_start": "t",
                "eval_round_end": "t",
                "val - loss - aggregated": loss,
                "eval_round_metrics_aggregated": {"val - prediction - accuracy": accuracy},
                "fit_round_metrics": {"train - loss": loss * 2},
            }
        }
    }


def job(rounds: int = 3, clients: int = 2) -> job_pb2.Job:
    return job_pb2.Job(
        id="j",
        state=job_pb2.JOB_STATE_NOT_STARTED,
        server_config=dict_to_struct({"n_server_rounds": rounds}),
        clients=[job_pb2.ClientInfo(data_path=f"/d/{i}") for i in range(clients)],
    )


def test_before_any_event_it_knows_rounds_and_clients_and_what_it_waits_for() -> None:
    progress = JobProgress.for_job(job())
    assert (progress.total_rounds, progress.n_clients, progress.completed_rounds) == (3, 2, 0)
    assert "not been started" in progress.waiting_for()
    assert [c.state for c in progress.clients()] == ["waiting", "waiting"]
    assert progress.eta(T0) is None and progress.elapsed(T0) == 0.0


def test_a_queued_job_waits_for_its_turn() -> None:
    event, progress = Events(), JobProgress.for_job(job())
    progress.apply(event(pb.SOURCE_KIND_JOB, {"state": "QUEUED"}, T0, state=job_pb2.JOB_STATE_QUEUED))
    assert progress.waiting_for() == "its turn in the queue (the control plane's limits are reached)"
    assert not progress.finished


def test_rounds_clients_elapsed_and_eta_from_event_times() -> None:
    event, progress = Events(), JobProgress.for_job(job())
    told = progress.apply(event(pb.SOURCE_KIND_JOB, {"state": "IN_PROGRESS"}, T0))
    assert told == ["job is IN_PROGRESS"]
    assert progress.waiting_for() == "the FL server to report"
    progress.apply(event(pb.SOURCE_KIND_SERVER, {"host_type": "server", "fit_start": "t"}, T0 + 1))
    assert progress.waiting_for() == "2 FL client(s) to connect"
    progress.apply(event(pb.SOURCE_KIND_CLIENT, {"initialized": "t"}, T0 + 1, client=0))
    progress.apply(event(pb.SOURCE_KIND_CLIENT, {"rounds": {"1": {"round_start": "t"}}}, T0 + 2, client=1))
    assert [c.state for c in progress.clients()] == ["connected", "training round 1"]
    client_round = {
        "rounds": {
            "1": {"eval_round_loss": 0.7, "eval_round_metrics": {"val - prediction - accuracy": 0.6}, "round_end": "t"}
        }
    }
    progress.apply(event(pb.SOURCE_KIND_CLIENT, client_round, T0 + 9, client=1))
    assert progress.clients()[1] == progress.clients()[1].__class__(1, "uuid1", "evaluated round 1", 1, 0.7, 0.6)
    assert progress.apply(event(pb.SOURCE_KIND_SERVER, server_round(1, 0.5, 0.8), T0 + 10)) == [
        "round 1/3: val loss 0.5000, val accuracy 0.8000"
    ]
    assert progress.completed_rounds == 1 and progress.current_round == 1 and progress.waiting_for() == ""
    assert progress.elapsed(T0 + 12) == pytest.approx(12)
    assert progress.eta(T0 + 12) == pytest.approx(2 * 10 - 2)  # 10 s a round, 2 rounds left, 2 s into the next
    # A round is told once, however many later patches touch it.
    assert progress.apply(event(pb.SOURCE_KIND_SERVER, {"rounds": {"1": {"extra": 1}}}, T0 + 11)) == []


def test_the_end_of_a_failed_job_is_told_with_its_error_and_freezes_elapsed() -> None:
    event, progress = Events(), JobProgress.for_job(job())
    progress.apply(event(pb.SOURCE_KIND_JOB, {"state": "IN_PROGRESS"}, T0))
    told = progress.apply(
        event(
            pb.SOURCE_KIND_JOB,
            {"state": "FINISHED_WITH_ERROR", "error_message": "boom"},
            T0 + 5,
            job_pb2.JOB_STATE_FINISHED_WITH_ERROR,
        )
    )
    assert told == ["job is FINISHED_WITH_ERROR: boom"]
    assert progress.finished and not progress.succeeded and progress.error_message == "boom"
    assert progress.elapsed(T0 + 100) == pytest.approx(5)
    assert [c.state for c in progress.clients()] == ["finished_with_error"] * 2


def test_a_notice_of_the_control_plane_is_told_as_one_and_changes_no_state() -> None:
    event, progress = Events(), JobProgress.for_job(job())
    progress.apply(event(pb.SOURCE_KIND_JOB, {"state": "IN_PROGRESS"}, T0))
    told = progress.apply(event(pb.SOURCE_KIND_JOB, {"notice": "a report of the FL server was set aside: x"}, T0 + 1))
    assert told == ["notice: a report of the FL server was set aside: x"]
    assert progress.state == job_pb2.JOB_STATE_IN_PROGRESS and progress.error_message == ""


def test_rounds_table_reads_both_report_layouts_and_non_finite_numbers() -> None:
    event, progress = Events(), JobProgress.for_job(job(rounds=2, clients=1))
    progress.apply(event(pb.SOURCE_KIND_SERVER, server_round(1, 0.5, 0.8), T0))
    older = {
        "rounds": {
            "2": {
                "eval_round_metrics_aggregated": {
                    "val - loss - aggregated": "NaN",
                    "val - prediction - accuracy - aggregated": 0.9,
                }
            }
        }
    }
    progress.apply(event(pb.SOURCE_KIND_SERVER, older, T0))
    client = {"rounds": {"1": {"eval_round_loss": {"checkpoint": 0.4}, "fit_round_losses": {"backward": 1.5}}}}
    progress.apply(event(pb.SOURCE_KIND_CLIENT, client, T0, client=0))
    first, second = progress.rounds_table()
    assert (first.number, first.loss, first.accuracy, first.train_loss) == (1, 0.5, 0.8, 1.0)
    assert first.client_loss == {0: 0.4} and first.client_train_loss == {0: 1.5} and first.client_accuracy == {0: None}
    assert second.loss is not None and math.isnan(second.loss) and second.accuracy == 0.9
    assert fmt(second.loss) == "NaN" and fmt(None) == "-" and fmt(0.12345) == "0.1235"


def test_non_finite_numbers_are_spelled_out_not_shown_as_missing() -> None:
    assert [fmt(number(v)) for v in ("NaN", "Infinity", "-Infinity", None)] == ["NaN", "inf", "-inf", "-"]


def test_reports_of_a_job_give_the_same_table_as_its_events() -> None:
    full = job(rounds=1, clients=1)
    full.server_metrics.CopyFrom(dict_to_struct(server_round(1, 0.5, 0.8)))
    full.clients[0].metrics.CopyFrom(dict_to_struct({"rounds": {"1": {"eval_round_loss": 0.4}}}))
    [row] = JobProgress.from_reports(full).rounds_table()
    assert (row.loss, row.accuracy, row.client_loss) == (0.5, 0.8, {0: 0.4})


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1.0), (0.5, 0.5), ("Infinity", math.inf), ("x", None), (True, None), (None, None)]
)
def test_number(value: Any, expected: float | None) -> None:
    assert number(value) == expected


def test_a_started_job_is_rebuilt_from_its_events_not_from_its_current_state() -> None:
    finished = job()
    finished.state = job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY
    progress = JobProgress.for_job(finished)
    assert not progress.finished and progress.waiting_for() == ""
    assert [c.state for c in progress.clients()] == ["waiting", "waiting"]


def test_a_round_is_told_at_eval_round_end_and_an_accuracy_reported_later_gets_its_own_line() -> None:
    # FL4Health's FlServer.evaluate_round: the loss and eval_round_end in one report, the aggregated metrics in the
    # next; the control plane may read them as two events.
    event, progress = Events(), JobProgress.for_job(job())
    loss_first = {"rounds": {"1": {"val - loss - aggregated": 0.5, "round": 1, "eval_round_end": "t"}}}
    assert progress.apply(event(pb.SOURCE_KIND_SERVER, loss_first, T0)) == ["round 1/3: val loss 0.5000"]
    assert progress.completed_rounds == 1
    metrics = {"rounds": {"1": {"eval_round_metrics_aggregated": {"val - prediction - accuracy": 0.8}}}}
    assert progress.apply(event(pb.SOURCE_KIND_SERVER, metrics, T0 + 1)) == ["round 1/3: val accuracy 0.8000"]
    assert progress.apply(event(pb.SOURCE_KIND_SERVER, {"rounds": {"1": {"extra": 1}}}, T0 + 2)) == []
    assert progress.completed_rounds == 1


def test_rounds_whose_clients_report_only_losses_still_show_progress() -> None:
    # No client metrics: FL4Health writes no eval_round_metrics_aggregated at all.
    event, progress = Events(), JobProgress.for_job(job(rounds=2))
    told = []
    for n in (1, 2):
        done = {"rounds": {str(n): {"val - loss - aggregated": 1 / n, "eval_round_end": "t"}}}
        told += progress.apply(event(pb.SOURCE_KIND_SERVER, done, T0 + n))
    assert told == ["round 1/2: val loss 1.0000", "round 2/2: val loss 0.5000"]
    assert progress.completed_rounds == 2


def test_a_client_whose_fit_ended_has_trained_its_round_and_evaluated_it_after_eval_round_end() -> None:
    event, progress = Events(), JobProgress.for_job(job(clients=1))
    fitted = {"rounds": {"1": {"round_start": "t", "round_end": "t"}}}
    progress.apply(event(pb.SOURCE_KIND_CLIENT, fitted, T0, client=0))
    assert progress.clients()[0].state == "trained round 1"
    progress.apply(event(pb.SOURCE_KIND_CLIENT, {"rounds": {"1": {"eval_round_end": "t"}}}, T0, client=0))
    assert progress.clients()[0].state == "evaluated round 1"


def fl4health_round(n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Round n as FL4Health reports it: no training loss on the server, each client's in fit_round_losses."""
    server = {"rounds": {str(n): {"fit_round_end": "t", "fit_round_metrics": {"train - prediction - accuracy": 0.5}}}}
    clients = [{"rounds": {str(n): {"fit_round_losses": {"backward": loss}}}} for loss in (1.0, 2.0)]
    return server, clients


def test_the_train_loss_is_the_servers_when_it_has_one_else_the_clients_mean_and_the_note_says_which() -> None:
    event, progress = Events(), JobProgress.for_job(job(rounds=2))
    progress.apply(event(pb.SOURCE_KIND_SERVER, server_round(1, 0.5, 0.8), T0))
    server, clients = fl4health_round(2)
    progress.apply(event(pb.SOURCE_KIND_SERVER, server, T0))
    for i, report in enumerate(clients):
        progress.apply(event(pb.SOURCE_KIND_CLIENT, report, T0, client=i))
    first, second = progress.rounds_table()
    assert (first.train_loss, first.train_loss_source) == (1.0, TrainLossSource.SERVER)
    assert (second.train_loss, second.train_loss_source) == (1.5, TrainLossSource.CLIENTS)
    assert second.client_train_loss == {0: 1.0, 1: 2.0}
    assert train_loss_note([second]) == "train loss: the clients' mean, unweighted"
    assert train_loss_note([first]) == "train loss: the FL server's aggregate"
    assert train_loss_note([first, second]) == (
        "train loss: the FL server's aggregate (round 1); the clients' mean, unweighted (round 2)"
    )
    assert train_loss_note([]) == ""


def test_the_clients_mean_waits_for_the_server_to_end_the_rounds_fit() -> None:
    event, progress = Events(), JobProgress.for_job(job(rounds=1))
    progress.apply(event(pb.SOURCE_KIND_SERVER, {"rounds": {"1": {"fit_round_start": "t"}}}, T0))
    _, clients = fl4health_round(1)
    progress.apply(event(pb.SOURCE_KIND_CLIENT, clients[0], T0, client=0))
    [row] = progress.rounds_table()
    assert (row.train_loss, row.train_loss_source, row.client_train_loss[0]) == (None, None, 1.0)
