"""Test support for sites: `florist-grpc agent` processes, raw agent sessions, job helpers."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import json_format, struct_pb2

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2
from florist_grpc.testing.plane import ControlPlaneThread
from tests.helpers import job_message

BIN = Path(sys.executable).parent


@dataclass
class AgentProcess:
    """A running `florist-grpc agent`, its stdout lines collected by a thread (so a test never blocks on it)."""

    process: subprocess.Popen[str]
    name: str
    root: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def wait_line(self, needle: str, timeout: float = 60.0) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty as exc:
                raise AssertionError(f"agent {self.name} printed no {needle!r} within {timeout}s") from exc
            if needle in line:
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def agent_command(control_plane: str, name: str, root: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "florist-grpc"),
        "agent",
        "--control-plane",
        control_plane,
        "--name",
        name,
        "--data-root",
        str(root),
        *extra,
    ]


def start_agent(
    control_plane: str,
    name: str,
    root: Path,
    *extra: str,
    token: str = "",
    prefix: Sequence[str] = (),
    wait: bool = True,
) -> AgentProcess:
    """Start an agent (optionally under `prefix`, e.g. `ip netns exec NS`) and wait until its session is up."""
    env = {**os.environ, "FLORIST_AGENT_TOKEN": token}
    log = open(root.parent / f"{name}-agent.log", "a")  # noqa: SIM115 - lives as long as the agent
    process = subprocess.Popen(
        [*prefix, *agent_command(control_plane, name, root, *extra)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    agent = AgentProcess(process, name, root)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            agent.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    if wait:
        agent.wait_line(f"florist-grpc agent {name} connected to {control_plane}")
    return agent


class RawSession:
    """An agent session opened by the test itself, to speak the protocol directly."""

    def __init__(self, channel: grpc.Channel, name: str, token: str = "") -> None:
        self.outbox: queue.Queue[agent_pb.ConnectRequest | None] = queue.Queue()
        self.outbox.put(agent_pb.ConnectRequest(hello=agent_pb.AgentHello(name=name, version="test", devices=["cpu"])))
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.call = agent_grpc.AgentServiceStub(channel).Connect(self._requests(), metadata=metadata, timeout=60)

    def _requests(self) -> Iterator[agent_pb.ConnectRequest]:
        while (message := self.outbox.get()) is not None:
            yield message

    def first(self) -> agent_pb.ConnectResponse:
        response: agent_pb.ConnectResponse = next(self.call)
        return response

    def code_at_end(self) -> grpc.StatusCode:
        """Read until the control plane ends the session; its status code."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def list_agents(plane: ControlPlaneThread) -> list[agent_pb.AgentInfo]:
    stub = agent_grpc.AgentServiceStub(plane.channel)
    return list(stub.ListAgents(agent_pb.ListAgentsRequest(), timeout=10).agents)


def agent_job(data_paths: list[str], agents: list[str], rounds: int = 2) -> job_pb2.Job:
    message = job_message(data_paths, rounds=rounds)
    for client, agent in zip(message.clients, agents, strict=True):
        client.agent = agent
    return message


def site_rounds(plane: ControlPlaneThread, job_id: str) -> dict[str, object]:
    rounds: dict[str, object] = json_format.MessageToDict(plane.get(job_id).clients[0].metrics).get("rounds", {})
    return rounds


class StubbornSite:
    """A fake agent on the real protocol that accepts every launch and ignores every stop. It answers data checks
    with `summary` (a real probe's, of a file the control plane's own clients use), starts nothing (a made-up pid),
    heartbeats every `heartbeat_seconds` until `fall_silent()`, and confirms a stop only when told (`confirm`).
    `running`: the clients its hello says it runs (a site reconnecting). With `answer_launches` False it never
    answers a launch either."""

    def __init__(
        self,
        channel: grpc.Channel,
        name: str,
        summary: dict[str, object],
        token: str = "",
        running: Sequence[str] = (),
        heartbeat_seconds: float = 0.5,
        answer_launches: bool = True,
    ) -> None:
        self.name = name
        self._answer_launches = answer_launches
        self._summary = summary
        self._heartbeat_seconds = heartbeat_seconds
        self.outbox: queue.Queue[agent_pb.ConnectRequest | None] = queue.Queue()
        known = [agent_pb.KnownClient(client_uuid=uuid, running=True) for uuid in running]
        hello = agent_pb.AgentHello(name=name, version="test", devices=["cpu"], clients=known)
        self.outbox.put(agent_pb.ConnectRequest(hello=hello))
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.call = agent_grpc.AgentServiceStub(channel).Connect(self._requests(), metadata=metadata)
        first: agent_pb.ConnectResponse = next(self.call)
        assert first.HasField("welcome"), first
        self.launched: queue.Queue[str] = queue.Queue()  # client uuids, as launches come
        self.stops: queue.Queue[str] = queue.Queue()  # client uuids, as stops come (every one ignored)
        self.ended: queue.Queue[grpc.StatusCode] = queue.Queue()  # how the control plane ended the session
        self._silent = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._answer, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def _requests(self) -> Iterator[agent_pb.ConnectRequest]:
        while (message := self.outbox.get()) is not None:
            yield message

    def _answer(self) -> None:
        code = grpc.StatusCode.OK
        try:
            for response in self.call:
                kind = response.WhichOneof("message")
                if kind == "check_data":
                    asked = response.check_data
                    summary = json_format.ParseDict(self._summary, struct_pb2.Struct()) if asked.probe else None
                    result = agent_pb.DataCheckResult(request_id=asked.request_id, ok=True, summary=summary)
                    self.outbox.put(agent_pb.ConnectRequest(data_check_result=result))
                elif kind == "launch_client":
                    launch = response.launch_client
                    started = agent_pb.ProcessStarted(
                        request_id=launch.request_id, client_uuid=launch.client_uuid, pid=2**22, log_path="/none"
                    )
                    if self._answer_launches:
                        self.outbox.put(agent_pb.ConnectRequest(process_started=started))
                    self.launched.put(launch.client_uuid)
                elif kind == "stop_client":
                    self.stops.put(response.stop_client.client_uuid)
        except grpc.RpcError as exc:
            code = exc.code()
        self._closed.set()
        self.ended.put(code)

    def _heartbeat(self) -> None:
        # The site's own clock (as an agent's heartbeat), ended by close().
        while not self._closed.wait(self._heartbeat_seconds):
            if not self._silent.is_set():
                self.outbox.put(agent_pb.ConnectRequest(heartbeat=agent_pb.Heartbeat()))

    def fall_silent(self) -> None:
        """Say nothing more, not even heartbeats (the stream stays open)."""
        self._silent.set()

    def confirm(self, client_uuid: str) -> None:
        """Say the client ended (killed by SIGTERM): its stop, confirmed at last."""
        exited = agent_pb.ProcessExited(client_uuid=client_uuid, exit_code=-15, exit_code_known=True)
        self.outbox.put(agent_pb.ConnectRequest(process_exited=exited))

    def next_stop(self, timeout: float) -> str:
        try:
            return self.stops.get(timeout=timeout)
        except queue.Empty as exc:
            raise AssertionError(f"site {self.name} got no stop within {timeout}s") from exc

    def close(self) -> None:
        self._closed.set()
        self.outbox.put(None)
        self.call.cancel()
