"""The ending policy of a running job, case by case (pure: no processes, no Redis, no store)."""

from __future__ import annotations

from typing import Any

import pytest

from florist_grpc.domain.model import Exit, JobState
from florist_grpc.jobs.ending import ProcessFacts, Stopping, Verdict, Waiting, judge, stopped

DONE = {"fit_start": "t", "fit_end": "t"}
RUNNING = None
CLEAN = Exit(0)
CRASHED = Exit(1)
KILLED = Exit(-9)
UNKNOWN = Exit(None)  # the process ended while the control plane was restarting
STOPPED_DIVERGED = Exit(3)  # the FL server's exit code after it stopped a diverged run


def diverged(loss: str, at: float = 1, fit_end: bool = True) -> dict[str, Any]:
    """A server report that says it stopped the run at round `at` (a Struct's round is a double: 1.0)."""
    return {"fit_start": "t", **({"fit_end": "t"} if fit_end else {}), "diverged": {"round": at, "loss": loss}}


# Losses as the report stores them (strings), after every round of a run that was let go on.
WENT_ON = {**DONE, "rounds": {"1": {"val - loss - aggregated": "NaN"}, "2": {"val - loss - aggregated": "Infinity"}}}


def server(exit: Exit | None, report: dict[str, Any] | None = None) -> ProcessFacts:
    failure = "" if exit is None or exit.clean else exit.describe()
    return ProcessFacts("FL server", exit, report if report is not None else {}, failure)


def client(exit: Exit | None, report: dict[str, str] | None = None, index: int = 0) -> ProcessFacts:
    failure = "" if exit is None or exit.clean else exit.describe()
    return ProcessFacts(f"FL client {index} (u{index})", exit, report or {}, failure)


OK = JobState.FINISHED_SUCCESSFULLY
ERROR = JobState.FINISHED_WITH_ERROR

CUT = "lost its FL connection: agent site-a's connection to the control plane dropped"
LOST = Exit(None, "was lost: agent site-a stayed disconnected for more than 60s")  # its agent stayed away

CASES = [
    # (why, server, clients, seconds since server done, expected)
    (
        "a client lost with its agent fails the job naming the agent",
        server(RUNNING),
        [client(LOST)],
        None,
        Verdict(ERROR, "FL client 0 (u0) was lost: agent site-a stayed disconnected for more than 60s"),
    ),
    (
        "a client lost with its agent after training completed is fine",
        server(CLEAN, DONE),
        [client(LOST)],
        None,
        Verdict(OK),
    ),
    ("everything still runs", server(RUNNING), [client(RUNNING)], None, Waiting()),
    (
        "a server killed mid-run is why, though its clients failed too (whichever exit came first)",
        server(KILLED, {"fit_start": "t"}),
        [client(CRASHED), client(RUNNING, index=1)],
        None,
        Verdict(ERROR, "FL server was killed by SIGKILL before reporting fit_end"),
    ),
    (
        "a server that crashed mid-run is why when its clients only failed after it",
        server(CRASHED, {"fit_start": "t"}),
        [client(CRASHED), client(RUNNING, index=1)],
        None,
        Verdict(ERROR, "FL server exited with code 1 before reporting fit_end"),
    ),
    (
        "a client killed mid-run is why its server then exited with an error (a round's client failed)",
        server(CRASHED, {"fit_start": "t"}),
        [client(CLEAN), client(KILLED, index=1)],
        None,
        Verdict(ERROR, "FL client 1 (u1) was killed by SIGKILL"),
    ),
    (
        "a client whose tunnelled FL connection dropped with its agent's is why its server then exited with an error",
        server(CRASHED, {"fit_start": "t"}),
        [client(RUNNING), ProcessFacts("FL client 1 (u1)", RUNNING, {}, connection_lost=CUT)],
        None,
        Verdict(ERROR, f"FL client 1 (u1) {CUT}"),
    ),
    (
        "a client that failed after its FL connection dropped with its agent's is named for the drop, seen first",
        server(RUNNING, {"fit_start": "t"}),
        [
            client(RUNNING),
            ProcessFacts("FL client 1 (u1)", CRASHED, {}, "exited with code 1: a log", connection_lost=CUT),
        ],
        None,
        Verdict(ERROR, f"FL client 1 (u1) {CUT}"),
    ),
    (
        "a dropped FL connection does not fail a run whose server finished",
        server(CLEAN, DONE),
        [client(CLEAN), ProcessFacts("FL client 1 (u1)", CLEAN, {}, connection_lost=CUT)],
        None,
        Verdict(OK),
    ),
    ("a clean finish", server(CLEAN, DONE), [client(CLEAN)], None, Verdict(OK)),
    ("clients done, server still reporting", server(RUNNING, DONE), [client(CLEAN)], None, Waiting()),
    (
        "a crashed client fails the job at once",
        server(RUNNING),
        [client(CLEAN), client(CRASHED, index=1)],
        None,
        Verdict(ERROR, "FL client 1 (u1) exited with code 1"),
    ),
    (
        "a killed client fails the job even after fit_end",
        server(CLEAN, DONE),
        [client(KILLED)],
        None,
        Verdict(ERROR, "FL client 0 (u0) was killed by SIGKILL"),
    ),
    (
        "a client of unknown exit that reported shutdown finished",
        server(CLEAN, DONE),
        [client(UNKNOWN, {"shutdown": "t"})],
        None,
        Verdict(OK),
    ),
    (
        "a client of unknown exit is fine once the server completed training",
        server(RUNNING, DONE),
        [client(UNKNOWN)],
        None,
        Waiting(),
    ),
    (
        "a client of unknown exit before fit_end failed",
        server(RUNNING),
        [client(UNKNOWN)],
        None,
        Verdict(ERROR, "FL client 0 (u0) ended (exit code unknown: it ran while the control plane was restarting)"),
    ),
    (
        "a server that exits without fit_end failed, whatever its code",
        server(CLEAN, {"fit_start": "t"}),
        [client(RUNNING)],
        None,
        Verdict(ERROR, "FL server  before reporting fit_end"),
    ),
    (
        "a server crash before fit_end names the crash",
        server(CRASHED),
        [client(RUNNING)],
        None,
        Verdict(ERROR, "FL server exited with code 1 before reporting fit_end"),
    ),
    (
        "a server crash after fit_end still fails",
        server(CRASHED, DONE),
        [client(CLEAN)],
        None,
        Verdict(ERROR, "FL server exited with code 1"),
    ),
    (
        "an adopted server (unknown exit) that reported fit_end finished",
        server(UNKNOWN, DONE),
        [client(UNKNOWN, {"shutdown": "t"})],
        None,
        Verdict(OK),
    ),
    (
        "server done, clients lingering: wait for them",
        server(CLEAN, DONE),
        [client(RUNNING)],
        None,
        Waiting(server_done=True),
    ),
    ("lingering within the grace", server(CLEAN, DONE), [client(RUNNING)], 5.0, Waiting(server_done=True)),
    ("lingering past the grace: success", server(CLEAN, DONE), [client(RUNNING)], 10.5, Verdict(OK)),
    (
        "a server that stopped a diverged run fails the job saying where",
        server(STOPPED_DIVERGED, diverged("NaN")),
        [client(CLEAN), client(CLEAN, index=1)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    (
        "an infinite loss is named as reported",
        server(STOPPED_DIVERGED, diverged("Infinity", at=4.0)),
        [client(CLEAN)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss Infinity at round 4"),
    ),
    (
        "a negative infinite loss is named as reported",
        server(STOPPED_DIVERGED, diverged("-Infinity", at=2)),
        [client(CLEAN)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss -Infinity at round 2"),
    ),
    ("a diverged server still stopping: wait", server(RUNNING, diverged("NaN")), [client(CLEAN)], None, Waiting()),
    (
        "a diverged run's clients get the same time to leave as a finished run's",
        server(STOPPED_DIVERGED, diverged("NaN")),
        [client(RUNNING)],
        5.0,
        Waiting(server_done=True),
    ),
    (
        "a diverged run's clients lingering past the grace: still the divergence",
        server(STOPPED_DIVERGED, diverged("NaN")),
        [client(RUNNING)],
        10.5,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    (
        "a client failing while a diverged run stops does not hide the divergence",
        server(STOPPED_DIVERGED, diverged("NaN")),
        [client(CRASHED)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    (
        "a diverged server that then crashed before fit_end: the divergence is the reason",
        server(CRASHED, diverged("NaN", fit_end=False)),
        [client(CLEAN)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    (
        "an adopted diverged server (unknown exit) fails the job the same way",
        server(UNKNOWN, diverged("NaN")),
        [client(UNKNOWN)],
        None,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    (
        "a server that failed ends the job at once, whatever a site's client does",
        server(CRASHED),
        [client(CLEAN), client(RUNNING, index=1)],
        None,
        Verdict(ERROR, "FL server exited with code 1 before reporting fit_end"),
    ),
    (
        "non-finite losses without the server's verdict (stop_on_divergence false) finish successfully",
        server(CLEAN, WENT_ON),
        [client(CLEAN)],
        None,
        Verdict(OK),
    ),
]


FULL = "the job's stored history reached 64 MiB, the bound of one job's history (64 MiB, ...)"

REFUSED_CASES = [
    # (why, server, clients, why the job's reports are refused, expected)
    (
        "a job whose reports are refused fails at once, naming the bound",
        server(RUNNING),
        [client(RUNNING)],
        FULL,
        Verdict(ERROR, FULL),
    ),
    (
        "refused after training completed: still a failure (its last reports were not stored)",
        server(RUNNING, DONE),
        [client(CLEAN)],
        FULL,
        Verdict(ERROR, FULL),
    ),
    (
        "a client that crashed first is the reason",
        server(RUNNING),
        [client(CRASHED)],
        FULL,
        Verdict(ERROR, "FL client 0 (u0) exited with code 1"),
    ),
    (
        "a diverged run being stopped: the divergence stays the reason",
        server(STOPPED_DIVERGED, diverged("NaN")),
        [client(CLEAN)],
        FULL,
        Verdict(ERROR, "diverged: aggregated val loss NaN at round 1"),
    ),
    ("nothing refused: no verdict of its own", server(RUNNING), [client(RUNNING)], "", Waiting()),
]


@pytest.mark.parametrize(
    ("why", "server_facts", "clients", "refused", "expected"), REFUSED_CASES, ids=[c[0] for c in REFUSED_CASES]
)
def test_a_job_whose_reports_are_refused(
    why: str, server_facts: ProcessFacts, clients: list[ProcessFacts], refused: str, expected: Verdict | Waiting
) -> None:
    assert judge(server_facts, clients, None, client_exit_grace=10.0, refused=refused) == expected


@pytest.mark.parametrize(("why", "server_facts", "clients", "since", "expected"), CASES, ids=[c[0] for c in CASES])
def test_ending_policy(
    why: str,
    server_facts: ProcessFacts,
    clients: list[ProcessFacts],
    since: float | None,
    expected: Verdict | Waiting,
) -> None:
    assert judge(server_facts, clients, since, client_exit_grace=10.0) == expected


GONE, RUNS = True, False
LOCAL, SITE = False, True

STOPPING = [
    # (why, processes as (gone, on_site), past the stop grace, the end may be recorded)
    ("every process gone", [(GONE, LOCAL), (GONE, SITE)], False, True),
    ("a local process still stopping", [(GONE, LOCAL), (RUNS, LOCAL)], False, False),
    ("a local process outlives the grace: SIGKILL, then its exit", [(RUNS, LOCAL), (GONE, SITE)], True, False),
    ("a site's client within the stop grace: its site may still confirm", [(GONE, LOCAL), (RUNS, SITE)], False, False),
    ("a site that never confirms does not hold the end past the grace", [(GONE, LOCAL), (RUNS, SITE)], True, True),
    ("sites past the grace, a local process still running", [(RUNS, LOCAL), (RUNS, SITE)], True, False),
    ("nothing launched", [], False, True),
]


@pytest.mark.parametrize(("why", "processes", "past_grace", "expected"), STOPPING, ids=[c[0] for c in STOPPING])
def test_when_an_ending_job_has_stopped(
    why: str, processes: list[tuple[bool, bool]], past_grace: bool, expected: bool
) -> None:
    assert stopped([Stopping(gone, on_site) for gone, on_site in processes], past_grace) is expected
