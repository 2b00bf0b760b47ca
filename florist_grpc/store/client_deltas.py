"""A client's state change in the changes log as a delta, not the whole job (issue 23): O(1) per change.

Each client's end used to log the whole job (every client) again, so a job's ends cost O(clients^2): 100 clients'
ends serialised 100 jobs of 100 clients. Now a client's state change logs only what changed (the client, its
state and error message, and the job's scalar counters that move without a change of their own), with `base`: the
revision of the job's latest change logged whole. Readers rebuild the snapshot from that base and the deltas
after it (`Rebuilder`); the live feed builds it from the snapshot this store logged last (`Snapshots`), which is
why a delta is written only when that snapshot is known to be the job's latest (its revision matches the job's).

A chain of deltas is bounded: after as many deltas as the job has clients (at least MIN_CHAIN) the next change is
logged whole, so rebuilding one costs no more than reading one whole snapshot, and whole snapshots stay O(1) per
change amortised. Trimming never removes a base a kept delta needs (`trim_cut`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from florist_grpc.domain.model import ClientState, Job, JsonObject
from florist_grpc.store.codec import snapshot_from_doc

MIN_CHAIN = 16
REMEMBERED_JOBS = 1024  # jobs whose latest snapshot is kept (least recently changed ones are dropped)


@dataclass(frozen=True)
class Logged:
    """A job as its latest change logged it (stamped with that revision), and where its chain of deltas starts."""

    job: Job
    base: int  # revision of the latest change that logged the job whole
    chain: int  # deltas logged since


class Snapshots:
    """The latest snapshot this store logged of each job it changed lately. Writers that log changes hold the
    change feed's lock (store/change_feed.py `ordered`); `forget` may come from any thread (a write to the job's
    document that logs no change of its own: the next change logs the job whole)."""

    def __init__(self, size: int = REMEMBERED_JOBS) -> None:
        self._size = size
        self._jobs: OrderedDict[str, Logged] = OrderedDict()
        self._lock = threading.Lock()

    def logged_whole(self, job: Job) -> None:
        self._remember(Logged(job, job.revision, 0))

    def logged_delta(self, previous: Logged, job: Job) -> None:
        self._remember(Logged(job, previous.base, previous.chain + 1))

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def latest(self, job_id: str, revision: int) -> Logged | None:
        """The job's snapshot if it is the one of `revision` (the job's current revision) and its chain may grow."""
        with self._lock:
            logged = self._jobs.get(job_id)
        if logged is None or logged.job.revision != revision:
            return None
        if logged.chain >= max(MIN_CHAIN, len(logged.job.clients)):
            return None  # log the next change whole: rebuilding stays bounded
        return logged

    def _remember(self, logged: Logged) -> None:
        with self._lock:
            self._jobs[logged.job.id] = logged
            self._jobs.move_to_end(logged.job.id)
            while len(self._jobs) > self._size:
                self._jobs.popitem(last=False)


def delta_doc(index: int, state: ClientState, error_message: str, last_sequence: int, current_round: int) -> JsonObject:
    """What a client's state change logs (`apply_delta` reads it back)."""
    delta: JsonObject = {
        "client": index,
        "state": int(state),
        "last_sequence": last_sequence,
        "current_round": current_round,
    }
    if error_message:  # as rules.client_state_sets: an empty message keeps the one recorded
        delta["error_message"] = error_message
    return delta


def apply_delta(job: Job, delta: JsonObject, revision: int) -> Job:
    """`job` (the snapshot before) with `delta` applied: the snapshot of `revision`. Clients other than the one
    that changed are shared with `job` (snapshots are not changed in place)."""
    index = int(delta["client"])
    clients = list(job.clients)
    changed = replace(clients[index], state=ClientState(delta["state"]))
    if "error_message" in delta:
        changed = replace(changed, error_message=str(delta["error_message"]))
    clients[index] = changed
    return replace(
        job,
        clients=clients,
        revision=revision,
        last_sequence=int(delta["last_sequence"]),
        current_round=int(delta["current_round"]),
    )


# (revision, job_id, document, base): a row of the changes log; base None = the document is the whole job.
Row = tuple[int, str, JsonObject, int | None]


class Rebuilder:
    """The snapshots of rows read in revision order. A delta whose job has no earlier row in this read is rebuilt
    from its base: `load(job_id, base, revision)` returns the job's rows from `base` (whole) up to, not including,
    `revision`."""

    def __init__(self, load: Callable[[str, int, int], list[Row]]) -> None:
        self._load = load
        self._latest: dict[str, Job] = {}

    def snapshot(self, row: Row) -> Job:
        revision, job_id, doc, base = row
        if base is None:
            job = snapshot_from_doc(job_id, doc)
        else:
            before = self._latest.get(job_id)
            if before is None:
                before = self._fold(self._load(job_id, base, revision))
            job = apply_delta(before, doc, revision)
        self._latest[job_id] = job
        return job

    @staticmethod
    def _fold(rows: list[Row]) -> Job:
        first, *rest = rows
        if first[3] is not None:
            raise ValueError(f"changes log: revision {first[0]} is a base but holds a delta")
        job = snapshot_from_doc(first[1], first[2])
        for revision, _, doc, _ in rest:
            job = apply_delta(job, doc, revision)
        return job


def trim_cut(revision: int, keep: int, oldest_base_after: Callable[[int], int | None]) -> int:
    """Trim the log up to this revision (inclusive): keep at least `keep` changes, and every base a kept delta
    needs (`oldest_base_after(cut)`: the smallest base among the deltas after revision `cut`). Moving the cut back
    keeps older deltas, whose own bases may be older still: repeated until no kept delta needs one at or below it."""
    cut = revision - keep
    while (needed := oldest_base_after(cut)) is not None and needed <= cut:
        cut = needed - 1
    return cut
