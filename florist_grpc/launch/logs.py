"""StreamLogs: a log file from a byte offset, optionally following it while the job runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from florist_grpc.domain.errors import FieldViolation, InvalidArgument

CHUNK_BYTES = 64 * 1024
FOLLOW_POLL_SECONDS = 0.2


def _read(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(CHUNK_BYTES)
    except FileNotFoundError:
        return b""


async def follow_log(
    path: Path, offset: int, follow: bool, finished: Callable[[], Awaitable[bool]]
) -> AsyncIterator[tuple[str, int]]:
    """(text, next_offset) chunks. With `follow`, keeps reading until `finished()` and the file is drained."""
    if offset < 0:  # checked here, where every log stream (control plane and agent) begins: seek() would fail
        raise InvalidArgument([FieldViolation("offset", "must not be negative")])
    while True:
        data = await asyncio.to_thread(_read, path, offset)
        if data:
            # Never split a UTF-8 sequence across chunks: hold back an incomplete tail for the next read.
            cut = len(data)
            if len(data) == CHUNK_BYTES:
                while cut > 0 and (data[cut - 1] & 0xC0) == 0x80:
                    cut -= 1
                if cut > 0 and data[cut - 1] >= 0xC0:
                    cut -= 1
                cut = cut or len(data)
            offset += cut
            yield data[:cut].decode("utf-8", "replace"), offset
            continue
        if not follow or await finished():
            # One last read: the process may have written its final lines just before it ended.
            data = await asyncio.to_thread(_read, path, offset)
            if not data:
                return
            continue
        await asyncio.sleep(FOLLOW_POLL_SECONDS)  # a log file has no change notification we can rely on here
