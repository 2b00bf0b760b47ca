"""One frozen settings object built from command-line flags and FLORIST_<FLAG> environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from florist_grpc.net import is_loopback


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class Timeouts:
    """Every wait the control plane does is bounded; the bounds live here."""

    # StartTraining: longest wait for the FL server to accept connections (DEADLINE_EXCEEDED past it).
    server_ready_seconds: float = 30.0
    # StopTraining / failure cleanup: SIGTERM, then SIGKILL after this.
    process_stop_grace_seconds: float = 5.0
    # After the FL server exits cleanly, how long clients get to exit on their own before being stopped.
    client_exit_grace_seconds: float = 15.0
    # Shutdown of the gRPC server: in-flight unary RPCs get this long to finish.
    shutdown_grace_seconds: float = 5.0
    # Calls to agents.
    agent_call_seconds: float = 10.0
    # A start that failed stops what it launched: SIGTERM, the stop grace, SIGKILL, and the exits being seen.
    start_cleanup_seconds: float = 15.0
    # The embedded Redis must answer within this after it is launched.
    redis_start_seconds: float = 15.0
    # The embedded Redis gets this long to flush its append-only file and exit.
    redis_stop_seconds: float = 10.0
    # Launcher pool: a launch waits this long for a pool still importing torch and Flower, then spawns instead.
    pool_start_seconds: float = 30.0
    # Launcher pool: its answer to one launch (a fork) must come within this, else the pool is replaced.
    pool_call_seconds: float = 10.0
    # Launcher pool: at shutdown, how long it gets to exit when it has no FL process left to reap.
    pool_stop_seconds: float = 5.0


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path(".florist")
    mongodb_uri: str = ""
    redis_url: str = ""
    auth_file: Path | None = None
    tls: TLSConfig | None = None
    insecure_no_auth: bool = False
    # Sent to agents as `authorization: Bearer ...` (FLORIST_AGENT_TOKEN).
    agent_token: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Fork FL processes from a process that has imported torch and Flower already (launch/pool.py).
    launcher_pool: bool = True

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def env_default(env: Mapping[str, str], flag: str, default: str | None = None) -> str | None:
    """The FLORIST_<FLAG> environment variable for `--flag-name`, else `default`."""
    return env.get("FLORIST_" + flag.lstrip("-").replace("-", "_").upper(), default)


def agent_token(env: Mapping[str, str]) -> str:
    """The shared agent token: the one place FLORIST_AGENT_TOKEN is read."""
    return env.get("FLORIST_AGENT_TOKEN", "")


@dataclass(frozen=True)
class AgentSettings:
    """`florist-grpc agent`: where it listens, the data it may read, the token callers must present."""

    host: str
    port: int
    data_root: Path
    token: str
    timeouts: Timeouts = field(default_factory=Timeouts)


def env_flag(env: Mapping[str, str], flag: str) -> bool:
    return (env_default(env, flag, "") or "").lower() in {"1", "true", "yes", "on"}


def add_serve_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    def opt(flag: str, default: str | None = None, **kwargs: object) -> None:
        parser.add_argument(flag, default=env_default(env, flag, default), **kwargs)  # type: ignore[arg-type]

    opt("--host", "127.0.0.1", help="address to bind (default 127.0.0.1)")
    opt("--port", "50051", type=int, help="port to bind; 0 picks a free one (default 50051)")
    opt("--data-dir", ".florist", help="SQLite store, embedded Redis and FL logs (default ./.florist)")
    opt("--mongodb-uri", "", help="use this MongoDB instead of the embedded SQLite store")
    opt("--redis-url", "", help="use this Redis instead of starting one")
    opt("--auth-file", None, help="tokens: lines of 'ROLE SHA256_HEX [NAME]'")
    opt("--tls-cert", None, help="server certificate (PEM)")
    opt("--tls-key", None, help="server private key (PEM)")
    opt("--tls-client-ca", None, help="require client certificates signed by this CA (PEM)")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=env_flag(env, "--insecure-no-auth"),
        help="allow serving without --auth-file on a non-loopback address",
    )
    parser.add_argument(
        "--no-launcher-pool",
        action="store_true",
        default=env_flag(env, "--no-launcher-pool"),
        help="spawn each FL process instead of forking it from a preloaded launcher pool",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build Settings; raise ValueError with a message for the user when flags do not fit together."""
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        tls = TLSConfig(
            Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None
        )
    elif args.tls_client_ca:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    if not 0 <= int(args.port) <= 65535:
        raise ValueError(f"--port must be 0..65535, not {args.port}")
    settings = Settings(
        host=args.host,
        port=int(args.port),
        data_dir=Path(args.data_dir),
        mongodb_uri=args.mongodb_uri or "",
        redis_url=args.redis_url or "",
        auth_file=Path(args.auth_file) if args.auth_file else None,
        tls=tls,
        insecure_no_auth=bool(args.insecure_no_auth),
        agent_token=agent_token(os.environ),
        launcher_pool=not getattr(args, "no_launcher_pool", False),
    )
    if settings.auth_file is None and not settings.is_loopback and not settings.insecure_no_auth:
        raise ValueError(
            f"refusing to serve without authentication on {settings.host}: give --auth-file, "
            "or --insecure-no-auth if this network is trusted"
        )
    return settings
