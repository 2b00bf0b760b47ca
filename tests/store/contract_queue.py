"""The queue's part of the JobStore contract (mixed into JobStoreContract, so every backend runs it): QUEUED jobs
keep their priority and the time they entered the queue, and cannot be deleted while they wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from florist_grpc.domain.errors import FailedPrecondition
from florist_grpc.domain.model import JobState
from florist_grpc.store.base import JobStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class QueueContract:
    def test_entering_the_queue_records_its_time_and_why_in_the_event(self, store: JobStore) -> None:
        from tests.store.test_store_contract import new_job

        job = new_job("a")
        job.priority = 7
        store.create_job(job)
        at = T0 + timedelta(minutes=3)
        event = store.transition("a", {JobState.NOT_STARTED}, JobState.QUEUED, at, reason="2 job(s) run")
        assert event is not None and event.patch == {"state": "QUEUED", "reason": "2 job(s) run"}
        queued = store.jobs_in_state(JobState.QUEUED)
        assert [(j.id, j.priority, j.queue_time, j.start_time) for j in queued] == [("a", 7, at, None)]
        store.transition("a", {JobState.QUEUED}, JobState.IN_PROGRESS, at + timedelta(seconds=1))
        started = store.get_job("a")
        assert started is not None and started.queue_time == at and started.start_time is not None
        changes = store.read_changes(1)
        assert [c.job.queue_time for c in changes if c.job] == [at, at]

    def test_a_queued_job_cannot_be_deleted(self, store: JobStore) -> None:
        from tests.store.test_store_contract import new_job

        store.create_job(new_job("a"))
        store.transition("a", {JobState.NOT_STARTED}, JobState.QUEUED, T0)
        with pytest.raises(FailedPrecondition, match="QUEUED"):
            store.delete_job("a")
        store.transition("a", {JobState.QUEUED}, JobState.CANCELLED, T0)
        assert store.delete_job("a")
