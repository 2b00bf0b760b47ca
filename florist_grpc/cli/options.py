"""The flags client commands share (each also an FLORIST_<FLAG> environment variable), and the connection."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer

DEFAULT_ADDRESS = "localhost:50051"
# Unary calls; streams have no deadline (a watch lasts as long as the job).
CALL_SECONDS = 30.0
START_SECONDS = 120.0


class Output(enum.StrEnum):
    text = "text"
    json = "json"


Address = Annotated[
    str,
    typer.Option("--address", envvar="FLORIST_ADDRESS", show_envvar=True, help="Control plane to call, HOST:PORT."),
]
Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="FLORIST_TOKEN",
        show_envvar=True,
        show_default=False,
        help="Bearer token (needed when the server runs with --auth-file).",
    ),
]
TlsCa = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar="FLORIST_TLS_CA",
        show_envvar=True,
        help="Use TLS, trusting server certificates signed by this CA (PEM).",
    ),
]
OutputFormat = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        envvar="FLORIST_OUTPUT",
        show_envvar=True,
        help="text for people; json for programs: one JSON object per line for streams and for agents, an error as"
        " one JSON object on stderr.",
    ),
]
JobId = Annotated[str, typer.Argument(help="The job's id (from `job create` or `job list`).", show_default=False)]


@dataclass(frozen=True)
class Connection:
    """Where and how a client command calls the control plane."""

    address: str = DEFAULT_ADDRESS
    token: str = ""
    tls_ca: Path | None = None

    def channel(self) -> grpc.Channel:
        if self.tls_ca is None:
            return grpc.insecure_channel(self.address)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.tls_ca.read_bytes())
        return grpc.secure_channel(self.address, credentials)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()
