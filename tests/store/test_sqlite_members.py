"""SqliteStore keeps a report a row per member (store/sqlite_members.py): a change writes what it changed, reads
give back the report as it was built, and a database that kept reports whole is brought over."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from florist_grpc.domain import merge_patch
from florist_grpc.domain.model import SERVER_SOURCE, JobState
from florist_grpc.domain.report_layout import current_round
from florist_grpc.store.base import ReportChange
from florist_grpc.store.sqlite import SqliteStore
from tests.store.test_store_contract import T0, new_job


def running(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.create_job(new_job("a"))
    store.transition("a", {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
    return store


def reported(store: SqliteStore, previous: dict[str, Any], report: dict[str, Any]) -> None:
    (event,) = store.append_report_changes([ReportChange("a", SERVER_SOURCE, previous, report, T0)])
    assert event is not None


def wal_frames(path: Path) -> int:
    """The pages written to the WAL since it was last emptied."""
    with sqlite3.connect(path) as conn:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


def test_a_change_to_one_round_of_a_long_report_writes_a_few_pages_not_the_report(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = running(path)
    rounds = {str(n): {"eval_round_loss": 1 / n, "note": "x" * 400} for n in range(1, 301)}
    report = {"host_type": "server", "rounds": rounds}
    reported(store, {}, report)  # about 130 KB: 32 pages and more
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    changed = {**report, "rounds": {**rounds, "300": {**rounds["300"], "eval_round_end": "t"}}}
    reported(store, report, changed)
    assert wal_frames(path) <= 8  # the round's row, the event, the job's row and their b-tree pages
    job = store.get_job("a")
    assert job is not None and job.server_metrics == changed


def test_members_replaced_deleted_and_merged_read_back_as_the_report_in_the_order_its_events_give(
    tmp_path: Path,
) -> None:
    store = running(tmp_path / "jobs.sqlite")
    steps: list[dict[str, Any]] = [
        {"a": 1, "rounds": {"1": {"x": 1}}, "b": {"c": {"d": 1}}},
        {"a": {"now": "an object"}, "rounds": {"1": {"x": 1}, "2": {"x": 2}}, "b": {"c": {"d": 1}}},
        {"a": "a string again", "rounds": {"2": {"x": 2, "y": [1, 2]}}, "b": 5},
        {"rounds": {"2": {"y": [True]}, "": {"empty key": 1}}, "b": {"c": {}}, "z": 0.5},
        {"z": 0.5, "rounds": 7, "new": {}},
        {"z": 0.5, "rounds": {"1": {}}, "new": {"k": "v"}},
        {"z": 0.5, 'a "q" \\ é\n\u0001': {'b "q" \\ ü\t': [1e300, -0.0, 12345678901234567890]}},
    ]
    previous: dict[str, Any] = {}
    replayed: dict[str, Any] = {}
    for report in steps:
        reported(store, previous, report)
        job = store.get_job("a")
        assert job is not None
        assert job.server_metrics == report
        # A member keeps its place when it changes, a new one comes last: the order of the patches applied.
        replayed = merge_patch.apply(replayed, merge_patch.diff(previous, report))
        assert json.dumps(job.server_metrics) == json.dumps(replayed)
        previous = report


def test_the_events_replayed_give_the_stored_report(tmp_path: Path) -> None:
    store = running(tmp_path / "jobs.sqlite")
    previous: dict[str, Any] = {}
    for n in range(1, 30):
        report = {"fit_start": "t0", "rounds": {str(k): {"loss": 1 / k, "round": k} for k in range(1, n + 1)}}
        if n % 7 == 0:
            del report["fit_start"]
        reported(store, previous, report)
        previous = report
    replayed: dict[str, Any] = {}
    for event in store.read_events("a", 0):
        if event.source == SERVER_SOURCE:
            replayed = merge_patch.apply(replayed, event.patch)
    job = store.get_job("a")
    assert job is not None and job.server_metrics == replayed == previous


def test_reports_an_earlier_version_kept_whole_are_read_as_they_were_and_changed_from_there(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    running(path).close()
    report = {"host_type": "server", "rounds": {"1": {"loss": 0.5}, "2": {"loss": 0.25}}, "fit_start": "t0"}
    with sqlite3.connect(path) as conn:  # as an earlier version left it: one row per source, the report whole
        conn.execute("CREATE TABLE reports (job_id TEXT, source TEXT, body TEXT, PRIMARY KEY (job_id, source))")
        conn.execute("INSERT INTO reports VALUES ('a', 'server', ?)", (json.dumps(report),))
        conn.execute("INSERT INTO reports VALUES ('a', 'client0', '{\"host_type\": \"client\"}')")
    store = SqliteStore(path)
    job = store.get_job("a")
    assert job is not None
    assert job.server_metrics == report and json.dumps(job.server_metrics) == json.dumps(report)
    assert job.clients[0].metrics == {"host_type": "client"}
    changed = {**report, "rounds": {**report["rounds"], "3": {"loss": 0.125}}}
    reported(store, report, changed)
    job = store.get_job("a")
    assert job is not None and job.server_metrics == changed
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'reports'").fetchone() is None
    store.close()


round_data = st.sampled_from([{}, {"fit_round_end": "t"}, {"eval_round_end": "t"}, {"x": 1}, 3])
server_reports = st.lists(
    st.dictionaries(
        st.sampled_from(["rounds", "fit_start"]),
        st.dictionaries(st.sampled_from(["1", "2", "3", "10", "01", "x"]), round_data, max_size=4) | st.just(1),
    ),
    min_size=1,
    max_size=8,
)


def test_the_current_round_is_the_last_round_the_server_finished_after_every_change(tmp_path: Path) -> None:
    """Counted from the rounds a change names (store/sqlite_reports.py), as report_layout counts a whole report."""
    store = SqliteStore(tmp_path / "jobs.sqlite")
    jobs = itertools.count()

    @settings(max_examples=60, deadline=None)
    @given(reports=server_reports)
    def check(reports: list[dict[str, Any]]) -> None:
        job_id = f"j{next(jobs)}"
        store.create_job(new_job(job_id))
        store.transition(job_id, {JobState.NOT_STARTED}, JobState.IN_PROGRESS, T0)
        previous: dict[str, Any] = {}
        for report in reports:
            store.append_report_changes([ReportChange(job_id, SERVER_SOURCE, previous, report, T0)])
            job = store.get_job(job_id)
            assert job is not None and job.current_round == current_round(report)
            previous = report

    check()
    store.close()
