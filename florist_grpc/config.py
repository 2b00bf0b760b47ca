"""One frozen settings object built from command-line flags and FLORIST_<FLAG> environment variables."""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from florist_grpc.domain.validation import agent_name_problem
from florist_grpc.net import LOOPBACK, address_problem, is_loopback, is_wildcard, split_host_port


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None


def certificate_problem(tls: TLSConfig) -> str | None:
    """Why a server could not use these files (unreadable, not PEM, a key that is not the certificate's), or None.
    gRPC would only say that it could not listen on its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An empty password: an encrypted key is refused (as gRPC refuses it) instead of prompted for.
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: "")
    except (OSError, ssl.SSLError) as exc:
        return f"--tls-cert {tls.cert_file} and --tls-key {tls.key_file}: not a certificate and its key in PEM ({exc})"
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            return f"--tls-client-ca {tls.client_ca_file}: not a CA certificate in PEM ({exc})"
    return None


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
    # A request to a connected agent (launch a client, check a dataset) must be answered within this.
    agent_call_seconds: float = 10.0
    # A job whose agent stays disconnected longer than this ends FINISHED_WITH_ERROR naming the agent.
    agent_away_grace_seconds: float = 60.0
    # A start that failed stops what it launched: SIGTERM, the stop grace, SIGKILL, and the exits being seen.
    start_cleanup_seconds: float = 15.0
    # The embedded Redis must answer within this after it is launched.
    redis_start_seconds: float = 15.0
    # The embedded Redis gets this long to flush its append-only file and exit.
    redis_stop_seconds: float = 10.0
    # StartTraining reads every local client's data file (in a subprocess) within this before launching.
    data_check_seconds: float = 120.0
    # Startup: describing the installed model plugins (in a subprocess) may take this long.
    plugin_discovery_seconds: float = 60.0
    # An FL process retries a report (redis-py Retry, exponential backoff) for at most this long, then exits
    # saying Redis is unreachable. Below server_ready_seconds, so a start fails with that cause, not "not ready";
    # above the time the supervisor needs to bring the embedded Redis back.
    report_retry_seconds: float = 25.0
    # After a job's terminal event is persisted, its runs' Redis keys live this long (then Redis drops them).
    report_key_ttl_seconds: float = 3600.0
    # How often the health check probes the store and Redis (and restarts an embedded Redis that died).
    health_check_seconds: float = 2.0
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
    # The host agents' FL clients are told to reach FL servers at (`--advertise-host`).
    advertise_host: str = ""
    # Prometheus text on http://HOST:metrics_port/metrics; 0 = no metrics endpoint.
    metrics_port: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Fork FL processes from a process that has imported torch and Flower already (launch/pool.py).
    launcher_pool: bool = True

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def fl_server_host(self) -> str:
        """Where FL servers of jobs with agent-run clients are advertised: --advertise-host, else --host unless
        it is a wildcard, else loopback (agents on this machine only)."""
        if self.advertise_host:
            return self.advertise_host
        return self.host if not is_wildcard(self.host) else LOOPBACK


def env_default(env: Mapping[str, str], flag: str, default: str | None = None) -> str | None:
    """The FLORIST_<FLAG> environment variable for `--flag-name`, else `default`."""
    return env.get("FLORIST_" + flag.lstrip("-").replace("-", "_").upper(), default)


def agent_token(env: Mapping[str, str]) -> str:
    """The agent's own token: the one place FLORIST_AGENT_TOKEN is read."""
    return env.get("FLORIST_AGENT_TOKEN", "")


@dataclass(frozen=True)
class AgentSettings:
    """`florist-grpc agent`: the control plane it dials, its name, the data it may read, how it authenticates."""

    control_plane: str
    name: str
    data_root: Path
    # Sent as `authorization: Bearer ...`; empty only against a control plane without an auth file.
    token: str = ""
    # CA that signed the control plane's certificate; also given to FL clients to verify the FL server.
    tls_ca: Path | None = None
    # Optional client certificate (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Plaintext to a non-loopback control plane (the token travels in clear).
    insecure: bool = False
    # Reconnect backoff: the first wait, and the bound it doubles up to (with jitter).
    reconnect_min_seconds: float = 0.2
    reconnect_max_seconds: float = 10.0
    # How often the agent says it is alive when it has nothing else to send.
    heartbeat_seconds: float = 10.0
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Fork FL clients (and data probes) from a preloaded launcher pool, as the control plane does.
    launcher_pool: bool = True

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None


def agent_settings_from_args(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> AgentSettings:
    """Build AgentSettings; raise ValueError with a message for the user when flags do not fit together."""
    if problem := address_problem(args.control_plane or ""):
        raise ValueError(f"--control-plane {args.control_plane!r}: {problem}")
    if problem := agent_name_problem(args.name or ""):
        raise ValueError(f"--name {args.name!r}: {problem}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key must be given together")
    if args.tls_cert and not args.tls_ca:
        raise ValueError("--tls-cert needs --tls-ca")
    host, _ = split_host_port(args.control_plane)
    if not args.tls_ca and not args.insecure and not is_loopback(host):
        raise ValueError(
            f"refusing to send the agent token in plaintext to {host}: give --tls-ca, "
            "or --insecure if this network is trusted"
        )
    token = agent_token(env)
    if not token and not args.insecure and not is_loopback(host):
        # A control plane on another machine has an auth file (serve refuses a non-loopback address without one
        # unless --insecure-no-auth): without a token every session would be refused. On loopback it may be a
        # development control plane without one; there a missing token is refused at the first session.
        raise ValueError(
            f"FLORIST_AGENT_TOKEN is not set: the control plane at {args.control_plane} accepts this agent only "
            f"with the token of an 'agent SHA256_HEX {args.name}' line of its auth file (or give --insecure if it "
            "runs without one, with --insecure-no-auth)"
        )
    root = Path(args.data_root)
    if not root.is_dir():
        raise ValueError(f"--data-root {root} is not a directory")
    return AgentSettings(
        control_plane=args.control_plane,
        name=args.name,
        data_root=root.resolve(),
        token=token,
        tls_ca=Path(args.tls_ca) if args.tls_ca else None,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        insecure=bool(args.insecure),
        launcher_pool=not getattr(args, "no_launcher_pool", False),
    )


def add_agent_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    def opt(flag: str, default: str | None = None, **kwargs: object) -> None:
        parser.add_argument(flag, default=env_default(env, flag, default), **kwargs)  # type: ignore[arg-type]

    opt("--control-plane", None, help="host:port of the control plane to dial")
    opt("--name", None, help="this agent's name (jobs name it in ClientInfo.agent)")
    opt("--data-root", None, help="datasets FL clients may read; job data paths are relative to it")
    opt("--tls-ca", None, help="CA of the control plane's certificate (PEM); enables TLS")
    opt("--tls-cert", None, help="client certificate for mutual TLS (PEM)")
    opt("--tls-key", None, help="client private key for mutual TLS (PEM)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=env_flag(env, "--insecure"),
        help="allow plaintext (and no token) to a non-loopback control plane: a trusted network",
    )


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
    opt("--advertise-host", "", help="host agents' FL clients reach FL servers at (default: --host unless wildcard)")
    opt("--metrics-port", "0", type=int, help="serve Prometheus metrics on this port (default 0: off)")
    opt("--log-format", "text", choices=["text", "json"], help="log lines as text or as JSON objects (default text)")
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
        if problem := certificate_problem(tls):
            raise ValueError(problem)
    elif args.tls_client_ca:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    for flag, value in (("--port", args.port), ("--metrics-port", args.metrics_port)):
        if not 0 <= int(value) <= 65535:
            raise ValueError(f"{flag} must be 0..65535, not {value}")
    if int(args.metrics_port) and int(args.metrics_port) == int(args.port):
        raise ValueError(
            f"--metrics-port {args.metrics_port} is also --port: give the metrics endpoint a port of its own"
        )
    settings = Settings(
        host=args.host,
        port=int(args.port),
        data_dir=Path(args.data_dir),
        mongodb_uri=args.mongodb_uri or "",
        redis_url=args.redis_url or "",
        auth_file=Path(args.auth_file) if args.auth_file else None,
        tls=tls,
        insecure_no_auth=bool(args.insecure_no_auth),
        advertise_host=(args.advertise_host or "").strip(),
        metrics_port=int(args.metrics_port),
        launcher_pool=not getattr(args, "no_launcher_pool", False),
    )
    if settings.auth_file is None and not settings.is_loopback and not settings.insecure_no_auth:
        raise ValueError(
            f"refusing to serve without authentication on {settings.host}: give --auth-file, "
            "or --insecure-no-auth if this network is trusted"
        )
    return settings
