"""A process's exit is judged on its sources' latest reports, even those the read throttle had not read yet
(metrics/throttle.py holds a source's next read for an interval; an exit does not wait for it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from florist_grpc.domain.model import ClientState, Exit, ProcessRef
from florist_grpc.testing import simulation
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread, wait_for


@dataclass
class ExitedProcess:
    """A handle on a process that has already exited with `status`: what a pool reports for a client it lost."""

    status: Exit
    ref: ProcessRef = field(default_factory=ProcessRef)

    def poll(self) -> Exit | None:
        return self.status

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def log_tail(self) -> str:
        return ""


def test_a_client_of_unknown_exit_after_its_servers_unread_fit_end_finished(tmp_path: Path) -> None:
    # The server's reports after its first read wait a minute for the next: only the client's exit reads them.
    timeouts = replace(TEST_TIMEOUTS, report_read_interval_seconds=60.0)
    running = ControlPlaneThread.in_dir(tmp_path / "florist", timeouts=timeouts)
    try:
        plane = running.plane
        job = simulation.create_running(plane, n_clients=1, attach=False)
        job.server.report_values(host_type="server", fit_start="2026-01-01 00:00:00.000001")
        simulation.attach_simulated(plane, job)

        def server_report() -> dict[str, object]:
            stored = plane.store.get_job(job.job_id)
            assert stored is not None
            return stored.server_metrics

        wait_for(lambda: "fit_start" in server_report(), message="the server's first read, at its subscription")
        job.server.report_values(fit_end="2026-01-01 00:00:01.000001")
        # Its exit code is unknown (its reaper is gone), so the server's fit_end is what says it ended normally.
        plane.follower.set_handle(job.job_id, "client0", ExitedProcess(Exit(None)))

        def client_state() -> ClientState | None:
            stored = plane.store.get_job(job.job_id)
            assert stored is not None
            state = stored.clients[0].state
            return state if state in (ClientState.FINISHED, ClientState.FAILED) else None

        assert wait_for(client_state, message="the client's end") is ClientState.FINISHED
        assert "fit_end" in server_report()  # read with the client's exit, not a minute later
        simulation.finish(plane, job)
    finally:
        running.stop()
