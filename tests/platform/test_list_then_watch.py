"""List, then watch: a mirror of every job that never misses or repeats a change, also across a restart.

A writer thread creates, moves and deletes jobs while the client lists them page by page and then watches from the
first page's revision, dropping changes at or below the revision of the job it holds (as DESIGN.md says a client
does). Halfway the control plane stops and starts again on the same data directory; the client resumes from the
last revision it saw. At the end the mirror equals the store, and the watches delivered every change after the
listing exactly once, in order.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from pathlib import Path

import grpc

from florist_grpc.domain.model import JobState
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.store.base import JobStore
from florist_grpc.testing.plane import ControlPlaneThread, wait_for
from tests.helpers import job_message, short_timeouts
from tests.store.test_store_contract import new_job

Mirror = dict[str, tuple[int, int]]  # job id -> (revision, state)
MOVES = {
    JobState.NOT_STARTED: JobState.IN_PROGRESS,
    JobState.IN_PROGRESS: JobState.CANCELLED,
}


def write(store: JobStore, prefix: str, count: int, seed: int) -> None:
    """`count` random job-level changes: create, move a job on, or delete a finished one."""
    rng = random.Random(seed)
    for i in range(count):
        jobs = store.list_jobs(50, None, JobState.UNSPECIFIED)
        choice = rng.random()
        if choice < 0.35 or not jobs:
            store.create_job(new_job(f"{prefix}{i}", datetime.now(UTC)))
            continue
        job = rng.choice(jobs)
        if job.state in MOVES and choice < 0.85:
            store.transition(job.id, {job.state}, MOVES[job.state], datetime.now(UTC))
        elif job.state is not JobState.IN_PROGRESS:
            store.delete_job(job.id)


def list_all(plane: ControlPlaneThread) -> tuple[Mirror, int]:
    """Every page, small ones (the writer changes jobs between them); the first page's revision."""
    mirror: Mirror = {}
    first_revision, token = 0, ""
    while True:
        page = plane.jobs.ListJobs(pb.ListJobsRequest(page_size=3, page_token=token), timeout=10)
        first_revision = first_revision or page.revision
        mirror.update({j.id: (j.revision, j.state) for j in page.jobs})
        if not (token := page.next_page_token):
            return mirror, first_revision


def follow(plane: ControlPlaneThread, mirror: Mirror, after: int, until: int | None, seen: list[int]) -> int:
    """Apply changes after `after` to the mirror until a bookmark at `until` (None: until the stream breaks);
    every revision delivered goes to `seen`. Returns the last revision seen (a change or a bookmark)."""
    last = after
    try:
        for response in plane.jobs.WatchJobs(pb.WatchJobsRequest(after_revision=after), timeout=60):
            change = response.change
            last = max(last, change.revision)
            if change.type == pb.JOB_CHANGE_TYPE_BOOKMARK:
                if until is not None and change.revision >= until:
                    return last
                continue
            seen.append(change.revision)
            held = mirror.get(change.job.id)
            if held is not None and change.revision <= held[0]:
                continue  # the listing already had it
            if change.type == pb.JOB_CHANGE_TYPE_DELETED:
                mirror.pop(change.job.id, None)
            else:
                mirror[change.job.id] = (change.revision, change.job.state)
    except grpc.RpcError as exc:
        assert until is None, exc
    return last


def truth(store: JobStore) -> Mirror:
    return {j.id: (j.revision, int(j.state)) for j in store.list_jobs(1000, None, JobState.UNSPECIFIED)}


def test_list_then_watch_misses_and_repeats_nothing_also_across_a_restart(tmp_path: Path) -> None:
    timeouts = short_timeouts(watch_bookmark_seconds=0.2)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts)
    port = plane.plane.port
    for i in range(12):
        plane.create(job_message([f"/d/{i}.pt"]))
    writer = threading.Thread(target=write, args=(plane.plane.store, "a", 150, 1))
    writer.start()
    mirror, listed_at = list_all(plane)  # while the writer changes jobs
    seen: list[int] = []
    watch = threading.Thread(target=lambda: follow(plane, mirror, listed_at, None, seen))
    watch.start()
    writer.join(60)
    plane.stop()  # the watch breaks with the control plane
    watch.join(30)
    resume_from = max(seen, default=listed_at)
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts, port=port)
    try:
        store = plane.plane.store
        # Jobs left IN_PROGRESS (with nothing launched) are ended by the restart's recovery: changes too.
        recovering = {j.id for j in store.jobs_in_state(JobState.IN_PROGRESS)}
        writer = threading.Thread(target=write, args=(store, "b", 150, 2))
        writer.start()
        writer.join(60)
        wait_for(lambda: not recovering & {j.id for j in store.jobs_in_state(JobState.IN_PROGRESS)}, 30, "recovery")
        follow(plane, mirror, resume_from, store.current_revision(), seen)
        assert mirror == truth(store)
        assert seen == sorted(set(seen)), "a revision was delivered twice or out of order"
        assert seen == [c.revision for c in store.read_changes(listed_at, limit=10_000)], "a change was missed"
    finally:
        plane.stop()
