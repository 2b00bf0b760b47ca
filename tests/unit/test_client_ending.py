"""How one client of a job ends, case by case (pure: no processes, no Redis, no store)."""

from __future__ import annotations

import pytest

from florist_grpc.domain.model import ClientState, Exit, JobState
from florist_grpc.jobs.ending import ClientEnd, ProcessFacts, client_end
from florist_grpc.launch.pool import ORPHANED_EXIT

RESTARTED = Exit(None)  # adopted after a restart of the control plane: nobody reaped it
ORPHANED = Exit(None, ORPHANED_EXIT)  # forked by a launcher pool that was killed
LOST = Exit(None, "was lost: agent site-a stayed disconnected for more than 60s")
SHUT_DOWN = {"shutdown": "t"}
CUT = "lost its FL connection: agent site-a's connection to the control plane dropped"


def client(
    exit: Exit | None,
    report: dict[str, str] | None = None,
    launched: bool = True,
    stopped: bool = False,
    failure: str = "",
) -> ProcessFacts:
    failure = failure or ("" if exit is None or exit.clean else exit.describe())
    return ProcessFacts("FL client 0 (u0)", exit, report or {}, failure, launched=launched, stopped=stopped)


FINISHED = ClientEnd(ClientState.FINISHED)
STOPPED = ClientEnd(ClientState.STOPPED)
OK, ERROR, CANCELLED = JobState.FINISHED_SUCCESSFULLY, JobState.FINISHED_WITH_ERROR, JobState.CANCELLED

CASES = [
    # (why, client, training complete, the job's end, expected)
    ("a running client has not ended", client(None), False, None, None),
    ("a client still being launched has not ended", client(None, launched=False), False, None, None),
    ("a clean exit finished", client(Exit(0)), False, None, FINISHED),
    ("a clean exit after we asked it to stop still finished", client(Exit(0), stopped=True), True, None, FINISHED),
    (
        "a crash after its site's connection (which carried its FL connection) dropped failed for the drop",
        ProcessFacts(
            "FL client 0 (u0)", Exit(1), {}, "exited with code 1; last log lines:\nSocket closed", connection_lost=CUT
        ),
        False,
        None,
        ClientEnd(ClientState.FAILED, CUT),
    ),
    (
        "a crash failed, with its log tail",
        client(Exit(1), failure="exited with code 1; last log lines:\nboom"),
        False,
        None,
        ClientEnd(ClientState.FAILED, "exited with code 1; last log lines:\nboom"),
    ),
    ("a client we stopped is STOPPED, whatever its signal", client(Exit(-15), stopped=True), False, ERROR, STOPPED),
    (
        "a client killed by someone else failed even after fit_end",
        client(Exit(-9)),
        True,
        None,
        ClientEnd(ClientState.FAILED, "was killed by SIGKILL"),
    ),
    (
        "the pool that forked it died and the run completed: finished, not failed",
        client(ORPHANED),
        True,
        None,
        FINISHED,
    ),
    (
        "the pool that forked it died after it reported shutdown: finished",
        client(ORPHANED, SHUT_DOWN),
        False,
        None,
        FINISHED,
    ),
    (
        "the pool that forked it died mid-run: failed, saying so (no restart is blamed)",
        client(ORPHANED),
        False,
        None,
        ClientEnd(ClientState.FAILED, "ended (exit code unknown: the launcher pool that forked it died)"),
    ),
    (
        "adopted after a restart and gone before fit_end: failed, naming the restart",
        client(RESTARTED),
        False,
        None,
        ClientEnd(ClientState.FAILED, "ended (exit code unknown: it ran while the control plane was restarting)"),
    ),
    ("adopted after a restart, the run completed: finished", client(RESTARTED), True, None, FINISHED),
    (
        "an unknown exit of a client we stopped, the run not complete: stopped",
        client(ORPHANED, stopped=True),
        False,
        CANCELLED,
        STOPPED,
    ),
    (
        "lost with its agent mid-run: failed, naming the agent",
        client(LOST),
        False,
        None,
        ClientEnd(ClientState.FAILED, "was lost: agent site-a stayed disconnected for more than 60s"),
    ),
    (
        "never launched because the start failed: stopped, not running",
        client(None, launched=False),
        False,
        ERROR,
        ClientEnd(ClientState.STOPPED, "not launched: the job ended FINISHED_WITH_ERROR before it was"),
    ),
    (
        "never launched because the job was cancelled while starting",
        client(None, launched=False),
        False,
        CANCELLED,
        ClientEnd(ClientState.STOPPED, "not launched: the job ended CANCELLED before it was"),
    ),
    (
        "launched, its exit never seen, the job over: stopped, saying so",
        client(None),
        True,
        OK,
        ClientEnd(ClientState.STOPPED, "stopped: the job ended FINISHED_SUCCESSFULLY before its exit was seen"),
    ),
]


@pytest.mark.parametrize(("why", "facts", "complete", "job_end", "expected"), CASES, ids=[c[0] for c in CASES])
def test_client_ending_policy(
    why: str, facts: ProcessFacts, complete: bool, job_end: JobState | None, expected: ClientEnd | None
) -> None:
    assert client_end(facts, complete, job_end) == expected


@pytest.mark.parametrize("job_end", [OK, ERROR, CANCELLED])
@pytest.mark.parametrize("complete", [False, True])
@pytest.mark.parametrize(
    "facts",
    [client(None), client(None, launched=False), client(Exit(0)), client(Exit(1)), client(ORPHANED), client(LOST)],
)
def test_once_the_job_ends_every_client_has_a_terminal_state(
    facts: ProcessFacts, complete: bool, job_end: JobState
) -> None:
    end = client_end(facts, complete, job_end)
    assert end is not None and end.state in {ClientState.FINISHED, ClientState.FAILED, ClientState.STOPPED}
    if end.state is ClientState.FAILED or facts.exit is None:
        assert end.message  # why it failed, or why it is not running though no exit was seen
