"""Readiness of a launched FL process, learnt by event: the process writes to a pipe once it is ready.

Two sources, one awaitable answer (True: ready; False: it ended first):
- a pipe read end we hold ourselves (a spawned process), watched by the event loop;
- a notice relayed by the launcher pool's reader thread (a forked process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading


class ReadySignal:
    """Set once, from any thread; awaited on an event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: bool | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []

    def set(self, value: bool) -> None:
        with self._lock:
            if self._value is not None:
                return
            self._value = value
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, future, value)

    async def wait(self) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            if self._value is not None:
                return self._value
            self._waiters.append((loop, future))
        return await future


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class PipeReady:
    """The read end of a spawned process's readiness pipe; closed once answered."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._value: bool | None = None
        os.set_blocking(fd, False)

    async def wait(self) -> bool:
        if self._value is not None or self._fd is None:
            return bool(self._value)
        fd = self._fd
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            _resolve(future, bool(data))  # data: ready; end of file: the process ended first

        loop.add_reader(fd, readable)
        try:
            self._value = await future
        finally:
            loop.remove_reader(fd)
        self.close()
        return self._value

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
