"""FL traffic over the agent's own connection (issue 22): a site needs no route but the control plane's one port.

Each client the agent launches gets its own listener on the agent's loopback, on a port the kernel picks, and is
told to reach its FL server there; every TCP connection the client makes to it rides one AgentService.Tunnel
stream over the session's channel (its TLS and token), and the control plane joins it to the FL server. One
listener per client, not one per agent: the port is how the agent knows whose connection it is (Flower's bytes,
TLS-encrypted end to end, say nothing the agent could read), so the control plane can check that the client is
one it launched on this agent. Ports are recorded in the state directory, so an agent restarted on the same data
root listens again where the clients it adopts expect it.

A connection that arrives while no session is open is closed at once: the FL client retries (bounded), as it
does when its FL server is unreachable. A tunnel that fails resets its connection, so the FL client sees an error
rather than a clean end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from florist_grpc.launch.tunnel_relay import CHUNK, close, relay, reset
from florist_grpc.net import LOOPBACK, join_host_port
from florist_grpc.proto.florist.v1 import agent_service_pb2 as pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# The control plane's answers that say this tunnel should not have been opened.
REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


class Tunnels:
    def __init__(self, agent: str, token: str, state_dir: Path) -> None:
        self._agent = agent
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._record = state_dir / "tunnels.json"
        self._listeners: dict[str, asyncio.Server] = {}  # client uuid -> its listener
        self._carried: set[asyncio.Task[None]] = set()  # connections being relayed
        # The open session's channel (None between sessions): tunnels ride it, so they share its TLS and token.
        self.channel: grpc.aio.Channel | None = None

    async def open(self, client_uuid: str, port: int = 0) -> str:
        """Listen for `client_uuid`'s FL connections (once per client); returns the address to give it."""
        server = self._listeners.get(client_uuid)
        if server is None:
            server = await asyncio.start_server(
                lambda r, w: self._accepted(client_uuid, r, w), LOOPBACK, port, limit=CHUNK
            )
            self._listeners[client_uuid] = server
            self._save()
        return join_host_port(LOOPBACK, server.sockets[0].getsockname()[1])

    async def reopen(self, running: list[str]) -> None:
        """Listen again on the recorded ports of the clients a previous agent launched that still run."""
        try:
            recorded: dict[str, int] = json.loads(self._record.read_text())
        except (OSError, ValueError):
            return
        for client_uuid in running:
            if (port := recorded.get(client_uuid)) is not None:
                try:
                    await self.open(client_uuid, port)
                except OSError as exc:
                    log.warning("client %s: cannot listen on its tunnel port %d again: %s", client_uuid, port, exc)
        self._save()

    def close(self, client_uuid: str) -> None:
        """Stop listening for a client that ended (connections being relayed run on to their end)."""
        server = self._listeners.pop(client_uuid, None)
        if server is not None:
            server.close()
            self._save()

    async def close_all(self) -> None:
        for server in self._listeners.values():
            server.close()
        self._listeners.clear()
        for task in list(self._carried):
            task.cancel()
        await asyncio.gather(*self._carried, return_exceptions=True)

    def _save(self) -> None:
        ports = {u: s.sockets[0].getsockname()[1] for u, s in self._listeners.items() if s.sockets}
        tmp = self._record.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        tmp.replace(self._record)

    async def _accepted(self, client_uuid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._carried.add(task)
        try:
            await self._carry(client_uuid, reader, writer)
        except asyncio.CancelledError:
            # The agent is stopping (close_all). This task is the connection's own (asyncio's server made it for
            # it): nothing awaits it, and asyncio would log its cancellation as an error.
            pass
        finally:
            self._carried.discard(task)

    async def _carry(self, client_uuid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = self.channel
        if channel is None:
            log.warning("client %s connected to its FL server while no session is open: closed", client_uuid)
            await close(writer, abort=True)
            return
        # Written with call.write (each awaits the stream's flow control); the stubs know only the iterator form.
        call = pb_grpc.AgentServiceStub(channel).Tunnel(metadata=self._metadata)  # type: ignore[call-arg]
        opened = pb.TunnelRequest(open=pb.TunnelOpen(agent=self._agent, client_uuid=client_uuid))

        async def received() -> AsyncIterator[bytes]:
            while True:
                message = await call.read()
                if not isinstance(message, pb.TunnelResponse):  # grpc.aio.EOF: the call ended
                    # Ended without the FL server's eof: the control plane could not (or no longer) join it.
                    raise ConnectionError(f"tunnel ended early: {(await call.code()).name} {await call.details()}")
                if message.eof:
                    return
                yield message.data

        async def send(data: bytes) -> None:
            await call.write(pb.TunnelRequest(data=data))

        try:
            await call.write(opened)
            await relay(received(), send, call.done_writing, reader, writer)
            if (code := await call.code()) != grpc.StatusCode.OK:  # both sides done: the control plane ends it
                raise ConnectionError(f"tunnel ended with {code.name} {await call.details()}")
        except (grpc.RpcError, OSError) as exc:
            call.cancel()  # a no-op if the control plane ended it first: then its status says why
            code = await call.code()
            shown = str(exc) if code == grpc.StatusCode.CANCELLED else f"{code.name} {await call.details()}"
            # A refusal is news; a connection reset by either end (an FL server exiting at the end of its run
            # resets it) is how FL connections often end.
            level = logging.WARNING if code in REFUSALS else logging.INFO
            log.log(level, "client %s: FL connection through the control plane ended: %s", client_uuid, shown)
        else:
            await close(writer)
        finally:
            call.cancel()  # a no-op once it ended; else (failed, cancelled) the control plane's side ends too
            if not writer.is_closing():
                reset(writer)  # the FL client sees a failure, not a clean end
