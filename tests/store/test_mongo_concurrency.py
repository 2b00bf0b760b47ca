"""MongoStore's batch ingest beside concurrent readers and a job ending meanwhile: readers roll written events
forward (get_job) without applying any twice, and no report event follows a job's terminal event."""

from __future__ import annotations

import threading

from florist_grpc.domain.merge_patch import apply
from florist_grpc.domain.model import SERVER_SOURCE, JobState, JsonObject
from florist_grpc.store.base import ReportChange
from tests.helpers import wait_for
from tests.store.test_mongo_batch import CLIENTS, mongo_store, started
from tests.store.test_store_contract import T0, report_of

SOURCES = [SERVER_SOURCE, *CLIENTS]


def test_readers_rolling_forward_beside_batch_writers_apply_every_event_once() -> None:
    store = mongo_store()
    started(store, "a", "b")
    done = threading.Event()

    def write() -> None:
        previous: dict[tuple[str, str], JsonObject] = {}
        for n in range(40):
            changes = []
            for job in "ab":
                for source in SOURCES:
                    # Each report drops the key the one before added: a patch applied twice or out of order shows.
                    report = {"n": n, f"k{n}": n}
                    changes.append(ReportChange(job, source, previous.get((job, source.key), {}), report, T0))
                    previous[(job, source.key)] = report
            store.append_report_changes(changes)
        done.set()

    def read() -> None:
        while not done.is_set():
            for job in "ab":
                store.get_job(job)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in "ab":
        events = store.read_events(job, 0, limit=10_000)
        assert [e.sequence for e in events] == list(range(1, 2 + 40 * len(SOURCES)))
        for source in SOURCES:
            rebuilt: JsonObject = {}
            for e in events:
                if e.source == source:
                    rebuilt = apply(rebuilt, e.patch)
            assert rebuilt == {"n": 39, "k39": 39} == report_of(store, job, source)


def test_no_report_event_follows_a_terminal_event_appended_meanwhile() -> None:
    store = mongo_store()
    started(store, "a")
    ended = threading.Event()

    def write() -> None:
        for n in range(60):
            store.append_report_changes([ReportChange("a", s, {}, {"n": n}, T0) for s in SOURCES])

    def end() -> None:
        wait_for(lambda: (job := store.get_job("a")) is not None and job.last_sequence >= 20, 10, "20 events")
        assert store.transition("a", {JobState.IN_PROGRESS}, JobState.CANCELLED, T0) is not None
        ended.set()

    threads = [threading.Thread(target=write), threading.Thread(target=end)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ended.is_set()
    events = store.read_events("a", 0, limit=10_000)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].job_state is JobState.CANCELLED
    assert all(e.job_state is JobState.IN_PROGRESS for e in events[1:-1])
