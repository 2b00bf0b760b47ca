"""How a running job and each of its clients end, decided from the processes' exits and persisted reports: pure
functions.

The follower thread gathers the facts (who exited how, what each source last reported *and was persisted*) and
applies the verdicts; every rule of how a job ends (`judge`, tests/unit/test_ending.py) and of how a client ends
(`client_end`, tests/unit/test_client_ending.py) lives here, with a table-driven test beside it. `judge` asks
`client_end` whether a client failed, so a job and its clients never disagree, and a job in a terminal state has
every client in a terminal state, each with a true reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from florist_grpc.domain.divergence import divergence_message
from florist_grpc.domain.model import ClientState, Exit, JobState, JsonObject
from florist_grpc.store.rules import unended_client_end


@dataclass(frozen=True)
class ProcessFacts:
    """What the policy knows of one FL process."""

    name: str  # "FL server", "FL client 1 (uuid)"
    exit: Exit | None  # None while it runs (or was never launched)
    report: JsonObject  # its last persisted report
    failure: str = ""  # how it failed, with its log tail (set once it exited uncleanly)
    launched: bool = True  # False while (or if) no process was started for it
    stopped: bool = False  # stopped by us: the job was ending
    # Why its FL connection broke while it ran, when that was its site's doing (its agent's connection, which
    # carried it, dropped); '' otherwise.
    connection_lost: str = ""


@dataclass(frozen=True)
class Verdict:
    state: JobState
    message: str = ""


@dataclass(frozen=True)
class Waiting:
    """Not ended yet. `server_done` is True once the server finished training and only clients remain."""

    server_done: bool = False


def judge(
    server: ProcessFacts,
    clients: Sequence[ProcessFacts],
    seconds_since_server_done: float | None,
    client_exit_grace: float,
    refused: str = "",
) -> Verdict | Waiting:
    """The job's ending, or Waiting. `seconds_since_server_done` is None until a previous call said server_done.
    `refused`: why the job's report changes are refused (its stored history is full), or ''."""
    training_complete = "fit_end" in server.report
    divergence = divergence_message(server.report)
    if server.exit is not None and not server.exit.clean and not training_complete and divergence is None:
        # The server died mid-run: its clients lose their connection and fail too, whichever exit was seen first,
        # but the server is why; unless a client was killed (a signal, or lost with its site) and the server then
        # exited on its own, as it does when a client of a round fails: that client is why.
        if (killed := _killed(clients)) is not None and server.exit.code is not None and server.exit.code > 0:
            return Verdict(JobState.FINISHED_WITH_ERROR, f"{killed.name} {killed.failure}")
        # Likewise a client whose FL connection went down with its agent's connection (it rode it).
        cut = next((c for c in clients if c.connection_lost and c.exit is None), None)
        if cut is not None and server.exit.code is not None and server.exit.code > 0:
            return Verdict(JobState.FINISHED_WITH_ERROR, f"{cut.name} {cut.connection_lost}")
        return Verdict(JobState.FINISHED_WITH_ERROR, f"{server.name} {server.failure} before reporting fit_end")
    failed = _first_failed(clients, training_complete)
    # Once the server says the run diverged, that is why the job fails: a client that fails while the run is being
    # stopped is marked FAILED itself but does not hide the reason.
    if failed is not None and divergence is None:
        return Verdict(JobState.FINISHED_WITH_ERROR, f"{failed[0].name} {failed[1]}")
    # A run that goes on with its reports refused is one nobody can follow: it ends now, naming the bound.
    if refused and divergence is None:
        return Verdict(JobState.FINISHED_WITH_ERROR, refused)
    if server.exit is None:
        return Waiting()
    if divergence is not None:
        # The server stopped a diverged run (and exits non-zero on purpose): the divergence is the reason, whatever
        # the exit code; its clients were told to disconnect as after a last round, so they end as they would then.
        ending = Verdict(JobState.FINISHED_WITH_ERROR, divergence)
    elif not training_complete:
        return Verdict(JobState.FINISHED_WITH_ERROR, f"{server.name} {server.failure} before reporting fit_end")
    elif server.exit.code not in (0, None):
        return Verdict(JobState.FINISHED_WITH_ERROR, f"{server.name} {server.failure}")
    else:
        ending = Verdict(JobState.FINISHED_SUCCESSFULLY)
    if all(c.exit is not None for c in clients):
        return ending
    if seconds_since_server_done is not None and seconds_since_server_done > client_exit_grace:
        # Training is over; clients that linger after the server left are stopped, not failed.
        return ending
    return Waiting(server_done=True)


@dataclass(frozen=True)
class Stopping:
    """One process of a job that is ending."""

    gone: bool  # its exit was seen (or it was never launched)
    on_site: bool  # an agent runs it: only its site can say it stopped


def stopped(processes: Sequence[Stopping], past_stop_grace: bool) -> bool:
    """Whether an ending job may record its end: every process the control plane runs itself is gone (SIGKILL at
    the stop grace sees to it), and every one a site runs is gone too or had the stop grace to go. A site never
    holds a job's end: a stop it has not confirmed by then is recorded as such and retried in the background."""
    return all(p.gone or (p.on_site and past_stop_grace) for p in processes)


def _killed(clients: Sequence[ProcessFacts]) -> ProcessFacts | None:
    """The first client that did not end by itself: killed by a signal, or lost with its agent."""
    for client in clients:
        if client.exit is not None and (client.exit.lost or (client.exit.code is not None and client.exit.code < 0)):
            return client
    return None


def _first_failed(clients: Sequence[ProcessFacts], training_complete: bool) -> tuple[ProcessFacts, str] | None:
    """The first client that failed, and why (as its own end says)."""
    for client in clients:
        end = client_end(client, training_complete)
        if end is not None and end.state is ClientState.FAILED:
            return client, end.message
    return None


@dataclass(frozen=True)
class ClientEnd:
    state: ClientState
    message: str = ""


def client_end(client: ProcessFacts, training_complete: bool, job_end: JobState | None = None) -> ClientEnd | None:
    """A client's terminal state and why, or None while it has not ended (and the job has not either).

    `training_complete`: the FL server reported fit_end. `job_end`: the state the job is ending in, once it is.
    """
    if client.exit is None:
        if job_end is None:
            return None
        # The store's rule for a client that had not ended, so both say the same (store/rules.py).
        return ClientEnd(
            *unended_client_end(ClientState.RUNNING if client.launched else ClientState.UNSPECIFIED, job_end)
        )
    if client.exit.clean:
        return ClientEnd(ClientState.FINISHED)
    # Its exit code is unknown (its reaper is gone: a restart, a dead launcher pool), but it reported shutdown or
    # its server completed training: it ended normally.
    if client.exit.code is None and ("shutdown" in client.report or training_complete):
        return ClientEnd(ClientState.FINISHED)
    if client.stopped:
        return ClientEnd(ClientState.STOPPED)
    if client.connection_lost:
        # It failed after its site's connection, which carried its FL connection, dropped (said of an exited client
        # only once that session is known to have ended): that is why, whichever exit is seen first.
        return ClientEnd(ClientState.FAILED, client.connection_lost)
    return ClientEnd(ClientState.FAILED, client.failure or client.exit.describe())
