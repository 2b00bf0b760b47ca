"""The one Redis pub/sub connection of the control plane, on one thread, for every job.

It only turns notifications into calls of `on_notify(uuid)`; the reading and persisting happens elsewhere (the
follower thread). A subscription confirmation is also a notification: whatever a process reported before we
subscribed -- or while we were disconnected -- is read right after the subscription exists, so nothing falls
between a GET and a SUBSCRIBE.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable

import redis

from florist_grpc import redis_clients

log = logging.getLogger(__name__)

# How long one blocking read of the pub/sub socket waits before the thread looks at its command queue.
_POLL_SECONDS = 0.05
_RECONNECT_MAX_SECONDS = 2.0


class ReportListener:
    def __init__(self, redis_url: str, on_notify: Callable[[str], None]) -> None:
        self._redis_url = redis_url
        self._on_notify = on_notify
        self._channels: set[str] = set()
        self._commands: queue.SimpleQueue[tuple[bool, list[str]]] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="florist-report-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def follow(self, uuids: Iterable[str]) -> None:
        self._commands.put((True, [u for u in uuids if u]))

    def unfollow(self, uuids: Iterable[str]) -> None:
        self._commands.put((False, [u for u in uuids if u]))

    def _apply(self, pubsub: redis.client.PubSub | None, command: tuple[bool, list[str]]) -> None:
        subscribe, uuids = command
        if subscribe:
            new = [u for u in uuids if u not in self._channels]
            self._channels.update(new)
            if pubsub is not None and new:
                pubsub.subscribe(*new)
        else:
            gone = [u for u in uuids if u in self._channels]
            self._channels.difference_update(gone)
            if pubsub is not None and gone:
                pubsub.unsubscribe(*gone)  # type: ignore[no-untyped-call]

    def _apply_commands(self, pubsub: redis.client.PubSub | None) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._apply(pubsub, command)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stopped.is_set():
            # 5 s bounds the PING and the (re)subscribe on a Redis that stops answering; reads wait _POLL_SECONDS.
            client = redis_clients.client(self._redis_url, 5.0, health_check_interval=10)
            pubsub = client.pubsub()
            try:
                client.ping()  # subscribing to nothing would not touch the network: prove the link first
                self._apply_commands(None)
                if self._channels:
                    pubsub.subscribe(*self._channels)
                backoff = 0.05
                while not self._stopped.is_set():
                    self._apply_commands(pubsub)
                    if not pubsub.subscribed:
                        # Nothing to read yet: block on the command queue instead of the socket.
                        with contextlib.suppress(queue.Empty):
                            self._apply(pubsub, self._commands.get(timeout=_POLL_SECONDS))
                        continue
                    message = pubsub.get_message(timeout=_POLL_SECONDS)
                    while message is not None:  # drain a burst without waiting between messages
                        if message["type"] in ("message", "subscribe"):
                            channel = message["channel"]
                            self._on_notify(channel.decode() if isinstance(channel, bytes) else str(channel))
                        message = pubsub.get_message(timeout=0.0)
            except (redis.RedisError, OSError) as exc:
                log.warning("Redis pub/sub connection lost (%s); reconnecting in %.2fs", exc, backoff)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, _RECONNECT_MAX_SECONDS)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass
