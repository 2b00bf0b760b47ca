"""The rules every JobStore backend applies, as pure functions: backends differ in storage, never in policy.

A backend reads the job's current state, asks these functions what may happen and what changes, and writes the
answer in its own way (SQL in one transaction; MongoDB documents through the event log).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from florist_grpc.domain.errors import FailedPrecondition, OutOfRange, quote
from florist_grpc.domain.model import ClientState, JobState, JsonObject, Launch, Source, SourceKind
from florist_grpc.domain.report_layout import current_round
from florist_grpc.store.base import SetAside
from florist_grpc.store.codec import to_micros


@dataclass(frozen=True)
class StateChange:
    """What a transition writes: the new state, the times it sets, the error it records and its event's patch."""

    state: JobState
    start_us: int | None
    end_us: int | None
    queue_us: int | None
    error_message: str
    patch: JsonObject


def state_change(
    current: JobState,
    from_states: Collection[JobState],
    to_state: JobState,
    time: datetime,
    error_message: str,
    reason: str = "",
) -> StateChange | None:
    """The change moving a job from `current` to `to_state`, or None if it is not in one of `from_states`.

    Entering IN_PROGRESS sets start_time; entering a terminal state sets end_time; entering QUEUED sets
    queue_time. `reason` (why a job waits, say) goes into the event's patch only.
    """
    if current not in from_states:
        return None
    us = to_micros(time)
    patch: JsonObject = {"state": to_state.name}
    if error_message:
        patch["error_message"] = error_message
    if reason:
        patch["reason"] = reason
    return StateChange(
        state=to_state,
        start_us=us if to_state is JobState.IN_PROGRESS else None,
        end_us=us if to_state.terminal else None,
        queue_us=us if to_state is JobState.QUEUED else None,
        error_message=error_message,
        patch=patch,
    )


def patch_text(patch: JsonObject) -> str | SetAside:
    """The patch as strict JSON text, or why no backend stores it: JSON has no NaN or Infinity (ingest turns
    them into strings first; a caller that did not gets its change set aside, never a store outage)."""
    try:
        return json.dumps(patch, allow_nan=False)
    except ValueError as exc:
        return SetAside(f"not storable as JSON (NaN or Infinity?): {exc}")
    except RecursionError:
        return SetAside("nested too deep to store")


def accepts_reports(state: JobState) -> bool:
    """Report changes are appended only while a job runs: a terminal event is always a job's last one."""
    return state is JobState.IN_PROGRESS


def check_deletable(job_id: str, state: JobState) -> None:
    if state in (JobState.IN_PROGRESS, JobState.QUEUED):
        raise FailedPrecondition(
            f"job {quote(job_id)} is {state.name}; stop it before deleting it", reason=f"JOB_{state.name}"
        )


# Changes to the stored job document are dotted paths (`clients.2.state`) -> new values, which MongoDB applies
# with $set and the JSON-text backend with `apply_sets`.


def launch_sets(launch: Launch) -> dict[str, Any]:
    """What recording a launch changes in the job document."""
    sets: dict[str, Any] = {
        "server_address": launch.server_address,
        "server_uuid": launch.server_uuid,
        "server_process": asdict(launch.server_process),
    }
    for i, (uuid, process) in enumerate(zip(launch.client_uuids, launch.client_processes, strict=True)):
        sets[f"clients.{i}.uuid"] = uuid
        sets[f"clients.{i}.process"] = asdict(process)
        if process.pid:  # launched; a client the start has not launched (yet) is not RUNNING
            sets[f"clients.{i}.state"] = int(ClientState.RUNNING)
    return sets


def client_state_sets(index: int, state: ClientState, error_message: str = "") -> dict[str, Any]:
    """What recording a client's lifecycle state changes in the job document."""
    sets: dict[str, Any] = {f"clients.{index}.state": int(state)}
    if error_message:
        sets[f"clients.{index}.error_message"] = error_message
    return sets


# A client in one of these has not ended: it runs, or it was never launched.
UNENDED_CLIENT_STATES = frozenset({ClientState.UNSPECIFIED, ClientState.RUNNING})


def unended_client_end(state: ClientState, job_end: JobState) -> tuple[ClientState, str]:
    """How a client that had not ended (`state`) ends with its job: STOPPED, saying why it is not running."""
    if state is ClientState.UNSPECIFIED:
        return ClientState.STOPPED, f"not launched: the job ended {job_end.name} before it was"
    return ClientState.STOPPED, f"stopped: the job ended {job_end.name} before its exit was seen"


def settled_client_sets(clients: list[JsonObject], to_state: JobState) -> dict[str, Any]:
    """What a transition to `to_state` changes in the stored clients (`doc["clients"]`): entering a terminal
    state leaves no client unended. The follower records each client's own end first (jobs/ending.py
    `client_end`); this holds the rule where nobody did (a job ended while not followed, or never launched)."""
    if not to_state.terminal:
        return {}
    sets: dict[str, Any] = {}
    for i, client in enumerate(clients):
        state = ClientState(client.get("state", 0))
        if state in UNENDED_CLIENT_STATES:
            sets.update(client_state_sets(i, *unended_client_end(state, to_state)))
    return sets


def stop_unconfirmed_sets(index: int, unconfirmed: bool) -> dict[str, Any]:
    """What recording (or confirming) a client's unconfirmed stop changes in the job document."""
    return {f"clients.{index}.stop_unconfirmed": unconfirmed}


def apply_sets(doc: JsonObject, sets: dict[str, Any]) -> None:
    """Apply dotted-path sets to a JSON document in place (numeric parts index lists)."""
    for path, value in sets.items():
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value


def out_of_range(after: int, current: int, first: int | None) -> OutOfRange | None:
    """Why changes after `after` cannot be read: beyond the current revision, or older than the log keeps."""
    if after > current:
        return OutOfRange(
            f"revision {after} is beyond the current revision {current}: list the jobs again",
            reason="REVISION_OUT_OF_RANGE",
            metadata={"current_revision": str(current)},
        )
    if after < current and first is not None and after < first - 1:
        return OutOfRange(
            f"changes after revision {after} are no longer kept (the oldest kept is {first}): list the jobs again",
            reason="REVISION_OUT_OF_RANGE",
            metadata={"current_revision": str(current), "oldest_revision": str(first)},
        )
    return None


def round_after(change_source: Source, report: JsonObject, stored_round: int) -> int | None:
    """The job's new current round when this report of `change_source` moves it (only the FL server's report
    counts rounds), else None: a job-level change, unlike the report change itself."""
    if change_source.kind is not SourceKind.SERVER:
        return None
    finished = current_round(report)
    return finished if finished != stored_round else None
