"""Both ends of AgentService.Tunnel relay one TCP connection over one gRPC stream with this (issue 22).

The agent relays between an FL client's connection to its loopback listener and its Tunnel call; the control
plane between the Tunnel stream and its own connection to the FL server. Memory stays bounded whatever the
model's size: at most CHUNK bytes are read from a socket at once (the stream reader's limit pauses the socket
beyond that), each chunk is handed on only once the previous one was taken (`await` on the gRPC write, which
waits for the stream's flow-control window; `drain` on the socket), and nothing is queued in between. TCP
half-close travels both ways: the end of one side's bytes is passed on as that side's end (write_eof on a socket,
done_writing or an `eof` message on the stream), and the relay ends once both directions have.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

# The largest message either side sends (also the stream readers' buffer limit): small enough that a tunnel holds
# little, large enough that a 10 MB model is a few hundred messages.
CHUNK = 64 * 1024


async def relay(
    received: AsyncIterator[bytes],
    send: Callable[[bytes], Awaitable[None]],
    send_eof: Callable[[], Awaitable[None]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Relay until both directions are done: `received` (the peer's bytes; its end is the peer's half-close) to
    the socket, and the socket's bytes to `send` (then `send_eof`). The first failure of either direction ends
    both and is raised."""

    async def inbound() -> None:
        async for data in received:
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):  # the socket's peer already closed: nobody to tell
                writer.write_eof()

    async def outbound() -> None:
        while data := await reader.read(CHUNK):
            await send(data)
        await send_eof()

    await both(inbound(), outbound())


async def both(first: Coroutine[Any, Any, None], second: Coroutine[Any, Any, None]) -> None:
    """Run both to their end; the first to fail cancels the other, and its error is raised."""
    tasks = [asyncio.create_task(first), asyncio.create_task(second)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if (error := task.exception()) is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        # Cancelled tasks have ended (and released the socket and the stream) before the caller closes them.
        await asyncio.gather(*tasks, return_exceptions=True)


def reset(writer: asyncio.StreamWriter) -> None:
    """Reset a relayed socket (RST, not FIN): the other end sees a failure, not a clean end of the bytes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close(writer: asyncio.StreamWriter, abort: bool = False) -> None:
    """Close a relayed socket; `abort`: reset it."""
    if abort:
        reset(writer)
    else:
        writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def join(
    host: str,
    port: int,
    connect_seconds: float,
    received: AsyncIterator[bytes],
    send: Callable[[bytes], Awaitable[None]],
    send_eof: Callable[[], Awaitable[None]],
) -> None:
    """Connect to host:port (the FL server) and relay a tunnel's bytes to and from it until both sides are done;
    raises OSError / TimeoutError when it cannot connect or the connection fails."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=CHUNK), connect_seconds)
    try:
        await relay(received, send, send_eof, reader, writer)
    except BaseException:
        await close(writer, abort=True)
        raise
    await close(writer)
