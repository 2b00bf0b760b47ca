"""The auth file, reloaded without a restart: a new token works at once; a removed token's open streams (a watch,
an agent's session) end UNAUTHENTICATED while other tokens' streams go on; a changed line's end UNAVAILABLE (an
agent's session stays); a file that does not read keeps the old tokens with one error in the log; SIGHUP reads it
at once even when nothing looks changed."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import signal
import threading
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_service_pb2 as pb
from florist_grpc.proto.florist.v1 import job_service_pb2_grpc
from florist_grpc.testing.plane import TEST_TIMEOUTS, ControlPlaneThread, wait_for
from tests.e2e.conftest import serve, stop
from tests.e2e.sites import RawSession

FAST = replace(TEST_TIMEOUTS, file_reload_seconds=0.1)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def code_of_list(channel: grpc.Channel, token: str) -> grpc.StatusCode:
    try:
        job_service_pb2_grpc.JobServiceStub(channel).ListJobs(pb.ListJobsRequest(), metadata=bearer(token), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


class Watch:
    """A WatchJobs stream read by a thread; `ended` gets its status code."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        self.call = stub.WatchJobs(pb.WatchJobsRequest(), metadata=bearer(token), timeout=60)
        self.changes: queue.Queue[pb.WatchJobsResponse] = queue.Queue()
        self.ended: queue.Queue[grpc.StatusCode] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.changes.get(timeout=10)  # its opening bookmark: the stream is open

    def _read(self) -> None:
        try:
            for change in self.call:
                self.changes.put(change)
        except grpc.RpcError as exc:
            self.ended.put(exc.code())


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"viewer {sha('stays')} dashboards\nviewer {sha('goes')} intern\nagent {sha('site')} site-a\n")
    return path


@pytest.fixture
def plane(tmp_path: Path, auth_file: Path) -> ControlPlaneThread:
    running = ControlPlaneThread.in_dir(tmp_path / "florist", auth_file=auth_file, timeouts=FAST)
    yield running  # type: ignore[misc]
    running.stop()


def test_a_new_token_works_and_a_removed_tokens_streams_end_unauthenticated(
    plane: ControlPlaneThread, auth_file: Path
) -> None:
    assert code_of_list(plane.channel, "new") == grpc.StatusCode.UNAUTHENTICATED
    kept, removed = Watch(plane.channel, "stays"), Watch(plane.channel, "goes")
    session = RawSession(plane.channel, "site-a", token="site")
    assert session.first().HasField("welcome")
    auth_file.write_text(f"viewer {sha('stays')} dashboards\nviewer {sha('new')} newcomer\n")

    wait_for(lambda: code_of_list(plane.channel, "new") == grpc.StatusCode.OK, 10, "the new token to work")
    assert removed.ended.get(timeout=10) == grpc.StatusCode.UNAUTHENTICATED
    assert "removed from the auth file" in removed.call.details()
    assert session.code_at_end() == grpc.StatusCode.UNAUTHENTICATED
    assert code_of_list(plane.channel, "goes") == grpc.StatusCode.UNAUTHENTICATED
    assert kept.ended.empty()  # another token's stream goes on
    kept.call.cancel()
    session.close()


def test_an_auth_file_that_does_not_read_keeps_the_old_tokens_with_one_error(
    plane: ControlPlaneThread, auth_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "florist_grpc.reloading")
    watch = Watch(plane.channel, "goes")
    auth_file.write_text(f"viewer {sha('stays')} dashboards\nsuperuser {sha('x')} eve\n")
    wait_for(lambda: "not reloaded" in caplog.text, 10, "the error")
    # Not a synchronisation: an observation window of 10 polls, in which the same broken file is not reported again.
    threading.Event().wait(10 * FAST.file_reload_seconds)
    assert code_of_list(plane.channel, "goes") == grpc.StatusCode.OK  # the old tokens stay in force
    assert watch.ended.empty()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{auth_file}:2" in errors[0], errors
    watch.call.cancel()


def test_sighup_reloads_the_auth_file_at_once(tmp_path: Path) -> None:
    """An edit the poll cannot see (same inode, size and mtime) is read at SIGHUP: the signal reads, not the poll."""
    auth_file = tmp_path / "tokens"
    auth_file.write_text(f"viewer {sha('old-one')} dashboards\n")
    before = os.stat(auth_file)
    served = serve(tmp_path / "florist", "--auth-file", str(auth_file))
    try:
        with grpc.insecure_channel(served.address) as channel:
            assert code_of_list(channel, "new-one") == grpc.StatusCode.UNAUTHENTICATED
            with open(auth_file, "r+") as same_file:  # in place, same length: inode and size unchanged
                same_file.write(f"viewer {sha('new-one')} dashboards\n")
            os.utime(auth_file, ns=(before.st_atime_ns, before.st_mtime_ns))
            served.process.send_signal(signal.SIGHUP)
            wait_for(lambda: code_of_list(channel, "new-one") == grpc.StatusCode.OK, 10, "the new token to work")
            assert code_of_list(channel, "old-one") == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert stop(served) == 0


def test_a_changed_line_ends_its_callers_streams_unavailable_but_leaves_its_agents_session(
    plane: ControlPlaneThread, auth_file: Path
) -> None:
    watch = Watch(plane.channel, "stays")
    session = RawSession(plane.channel, "site-a", token="site")
    assert session.first().HasField("welcome")
    auth_file.write_text(f"viewer {sha('stays')} dashboards alpha\nagent {sha('site')} site-a alpha\n")
    assert watch.ended.get(timeout=10) == grpc.StatusCode.UNAVAILABLE  # to call again under its narrower line
    assert "line of dashboards changed" in watch.call.details()
    assert code_of_list(plane.channel, "stays") == grpc.StatusCode.OK
    listed = agent_grpc.AgentServiceStub(plane.channel).ListAgents(
        agent_pb.ListAgentsRequest(), metadata=bearer("stays"), timeout=10
    )
    assert [(a.name, a.connected) for a in listed.agents] == [("site-a", True)]  # its session was never dropped
    session.close()
