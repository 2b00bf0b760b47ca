"""What the control plane reads again when it changes, or at once on SIGHUP, without dropping anything: its TLS
certificate, key and client CA (new connections get the new ones; open ones, agents' sessions included, keep
theirs) and its auth file (a new token works at once; a removed token's open streams end UNAUTHENTICATED). A file
that does not read keeps the previous one in use, with one error in the log (florist_grpc/reloading.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from florist_grpc.api.auth import Principal, load_auth_file
from florist_grpc.api.grpc_server import ServingCertificate
from florist_grpc.api.token_table import TokenTable
from florist_grpc.config import Settings
from florist_grpc.reloading import Reloadable, poll
from florist_grpc.tls_files import TlsMaterial, read_tls


class PlaneFiles:
    """The control plane's reloadable files. Built at start (a file that does not read then is an error)."""

    def __init__(self, settings: Settings) -> None:
        self._watched: list[Reloadable[Any]] = []
        self._seconds = settings.timeouts.file_reload_seconds
        self._poll: asyncio.Task[None] | None = None
        self.certificate: ServingCertificate | None = None
        self.tls_files: Reloadable[TlsMaterial] | None = None  # as reloaded (the dashboard's port serves them too)
        tls = settings.tls
        if tls is not None:
            paths = [tls.cert_file, tls.key_file, *([tls.client_ca_file] if tls.client_ca_file else [])]
            files = Reloadable[TlsMaterial](
                f"--tls-cert {tls.cert_file} / --tls-key {tls.key_file}",
                paths,
                lambda: read_tls(tls.cert_file, tls.key_file, tls.client_ca_file),
            )
            self.certificate = ServingCertificate(files.current)
            files.on_change.append(self.certificate.renew)
            self.tls_files = files
            self._watched.append(files)
        self.tokens = TokenTable(None)
        # Told after the auth file changed (the queue: a queued job's site may no longer run it). Event loop.
        self.on_tokens_changed: list[Callable[[], None]] = []
        auth_file = settings.auth_file
        if auth_file is not None:
            auth = Reloadable[dict[str, Principal]](
                f"--auth-file {auth_file}", [auth_file], lambda: load_auth_file(auth_file)
            )
            self.tokens.tokens = auth.current
            auth.on_change.append(self._tokens_changed)
            self._watched.append(auth)

    def _tokens_changed(self, old: dict[str, Principal], new: dict[str, Principal]) -> None:
        self.tokens.replace(new)
        for listener in self.on_tokens_changed:
            listener()

    def start(self) -> None:
        """Look at the files every Timeouts.file_reload_seconds (event loop)."""
        if self._watched:
            self._poll = asyncio.get_running_loop().create_task(poll(self._watched, self._seconds))

    def reload(self) -> None:
        """Read every file again now (SIGHUP; event loop)."""
        for reloadable in self._watched:
            reloadable.check(force=True)

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
