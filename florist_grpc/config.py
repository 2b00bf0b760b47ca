"""The frozen settings of `serve` and `agent`, built from their flags' typed values (cli/service.py defines the flags
and their FLORIST_<FLAG> variables) by `Settings.build` / `AgentSettings.build`, which hold the rules between flags."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from florist_grpc.domain.tracking import trackers_problem
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
    # A job's end: SIGTERM, then SIGKILL after this; a site's unconfirmed stop no longer holds it, and is re-sent.
    process_stop_grace_seconds: float = 5.0
    # After the FL server exits cleanly, how long clients get to exit on their own before being stopped.
    client_exit_grace_seconds: float = 15.0
    # Shutdown of the gRPC server: in-flight unary RPCs get this long to finish.
    shutdown_grace_seconds: float = 5.0
    # A request to a connected agent (launch a client, check a dataset) must be answered within this.
    agent_call_seconds: float = 10.0
    # A job whose agent stays disconnected longer than this ends FINISHED_WITH_ERROR naming the agent.
    agent_away_grace_seconds: float = 60.0
    # An agent's session must open with hello within this; a stream that says nothing ends DEADLINE_EXCEEDED.
    agent_hello_seconds: float = 10.0
    # 3 of an agent's heartbeats (AgentSettings.heartbeat_seconds): silent longer, its session is closed (away).
    agent_silence_seconds: float = 30.0
    # Stopping a job (StopTraining, a failed start): SIGTERM, the stop grace, SIGKILL and the exits seen, in this.
    stop_seconds: float = 15.0
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
    # WatchJobs: a watch that has sent nothing for this long gets a BOOKMARK with the latest revision it covers
    # (proxies and load balancers drop streams that stay silent; a client learns where to resume).
    watch_bookmark_seconds: float = 30.0


MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one report, one job's history and an embedded Redis may hold. Every bound refuses loudly (a notice in
    the job's events, a failed job, an error to the writer), never by dropping data silently."""

    # One report: a source's whole JSON document, SET again on every change and read whole by the ingest. Ours
    # grow by 0.53 KiB per round (server) and 0.63 KiB (client) (measured on a 25-round job), so 1 MiB holds over
    # 1,500 rounds. A larger one is never read into memory: it is set aside (the source's last stored report
    # stands) with a notice in the job's events.
    report_max_bytes: int = 1 * MiB
    # One job's stored history: the bytes of its events' patches. A job stores about 0.65 KiB per source and round
    # (measured: 1.9 KiB per round for a server and 2 clients), so 64 MiB holds 30,000 rounds of such a job and
    # 8,000 of a 10-client one. A job past it (a site rewriting megabytes every few seconds: 300 reports of 1 MB
    # made 159 MB of store) fails FINISHED_WITH_ERROR naming the bound: its further report changes are refused,
    # and a run going on without a history would be one whose losses nobody can see.
    job_history_max_bytes: int = 64 * MiB
    # One report an agent relays for a client (and the control plane accepts from it): above report_max_bytes, so
    # a report a little over the bound still reaches the control plane, which sets it aside with a notice the
    # user sees; below the gRPC message bound (16 MiB). An agent does not read a larger one (it logs it).
    relayed_report_max_bytes: int = 4 * MiB
    # The embedded Redis (the control plane's and each agent's): `maxmemory`, with `noeviction`, so a report that
    # does not fit is refused to its writer (which fails, saying so) instead of another run's report vanishing.
    # It holds one report per running FL process (and per ended one until its key expires): hundreds at the bound.
    redis_max_memory_bytes: int = 512 * MiB
    # The largest value one Redis command may carry (`proto-max-bulk-len`, at least 1 MiB): a single SET cannot
    # jump over `maxmemory` by hundreds of MiB. Above report_max_bytes, so a report somewhat over the bound is
    # still stored and set aside with a notice rather than refused to its writer.
    redis_max_value_bytes: int = 16 * MiB


@dataclass(frozen=True)
class Settings:
    """`florist-grpc serve`. Each field's default is the default of its flag."""

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
    limits: Limits = field(default_factory=Limits)
    # Fork FL processes from a process that has imported torch and Flower already (launch/pool.py).
    launcher_pool: bool = True
    # `--data-root`: local clients' data files must lie under one of these (resolved) directories, symlinks
    # resolved; none = any absolute regular file.
    data_roots: tuple[Path, ...] = ()
    # The queue: at most this many jobs run at once, in all and per project (0 = no limit); the rest wait.
    max_running_jobs: int = 0
    max_running_jobs_per_project: int = 0
    # `--mlflow-tracking-uri`: every job becomes a run of this MLflow tracking server; empty = none.
    mlflow_tracking_uri: str = ""
    # `--mlflow-experiment`: the experiment of jobs that name none (Job.tracking.experiment).
    mlflow_experiment: str = "florist-grpc"
    # `--tensorboard-dir`: every job's metrics as TensorBoard event files under DIR/<job id>/; None = none.
    tensorboard_dir: Path | None = None

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

    @classmethod
    def build(
        cls,
        *,
        host: str,
        port: int,
        data_dir: Path,
        mongodb_uri: str,
        redis_url: str,
        auth_file: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        tls_client_ca: Path | None,
        insecure_no_auth: bool,
        advertise_host: str,
        metrics_port: int,
        launcher_pool: bool,
        data_roots: Sequence[Path],
        max_running_jobs: int = 0,
        max_running_jobs_per_project: int = 0,
        mlflow_tracking_uri: str = "",
        mlflow_experiment: str = "florist-grpc",
        tensorboard_dir: Path | None = None,
    ) -> Settings:
        """Settings from serve's flags; raise ValueError with a message for the user when they do not fit
        together (named as the flags are)."""
        tls = None
        if tls_cert or tls_key:
            if not (tls_cert and tls_key):
                raise ValueError("--tls-cert and --tls-key must be given together")
            tls = TLSConfig(tls_cert, tls_key, tls_client_ca)
            if problem := certificate_problem(tls):
                raise ValueError(problem)
        elif tls_client_ca:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        for flag, value in (("--port", port), ("--metrics-port", metrics_port)):
            if not 0 <= value <= 65535:
                raise ValueError(f"{flag} must be 0..65535, not {value}")
        if metrics_port and metrics_port == port:
            raise ValueError(
                f"--metrics-port {metrics_port} is also --port: give the metrics endpoint a port of its own"
            )
        for root in data_roots:
            if not root.is_dir():
                raise ValueError(f"--data-root {root} is not a directory")
        for flag, limit in (
            ("--max-running-jobs", max_running_jobs),
            ("--max-running-jobs-per-project", max_running_jobs_per_project),
        ):
            if limit < 0:
                raise ValueError(f"{flag} must be 0 (no limit) or more, not {limit}")
        if problem := trackers_problem(mlflow_tracking_uri, mlflow_experiment):
            raise ValueError(problem)
        if tensorboard_dir is not None and tensorboard_dir.exists() and not tensorboard_dir.is_dir():
            raise ValueError(f"--tensorboard-dir {tensorboard_dir} is not a directory")
        if auth_file is None and not is_loopback(host) and not insecure_no_auth:
            raise ValueError(
                f"refusing to serve without authentication on {host}: give --auth-file, "
                "or --insecure-no-auth if this network is trusted"
            )
        return cls(
            host=host,
            port=port,
            data_dir=data_dir,
            mongodb_uri=mongodb_uri,
            redis_url=redis_url,
            auth_file=auth_file,
            tls=tls,
            insecure_no_auth=insecure_no_auth,
            advertise_host=advertise_host.strip(),
            metrics_port=metrics_port,
            launcher_pool=launcher_pool,
            data_roots=tuple(root.resolve() for root in data_roots),
            max_running_jobs=max_running_jobs,
            max_running_jobs_per_project=max_running_jobs_per_project,
            mlflow_tracking_uri=mlflow_tracking_uri.strip(),
            mlflow_experiment=mlflow_experiment,
            tensorboard_dir=tensorboard_dir,
        )


def agent_token(env: Mapping[str, str]) -> str:
    """The agent's own token: the one place FLORIST_AGENT_TOKEN is read (a variable, never a flag: argv is
    visible to every user of the machine)."""
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
    limits: Limits = field(default_factory=Limits)
    # Fork FL clients (and data probes) from a preloaded launcher pool, as the control plane does.
    launcher_pool: bool = True
    # The most FL clients it runs at once (`--max-clients`, told in its hello); 0 = no limit.
    max_clients: int = 0
    # Its FL clients connect to FL servers directly (`--fl-direct`), not over the session (AgentService.Tunnel).
    fl_direct: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @classmethod
    def build(
        cls,
        *,
        control_plane: str,
        name: str,
        data_root: Path,
        token: str,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        insecure: bool,
        launcher_pool: bool,
        max_clients: int = 0,
        fl_direct: bool = False,
    ) -> AgentSettings:
        """AgentSettings from the agent's flags and its token; raise ValueError with a message for the user when
        they do not fit together."""
        if problem := address_problem(control_plane):
            raise ValueError(f"--control-plane {control_plane!r}: {problem}")
        if problem := agent_name_problem(name):
            raise ValueError(f"--name {name!r}: {problem}")
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if tls_cert and not tls_ca:
            raise ValueError("--tls-cert needs --tls-ca")
        host, _ = split_host_port(control_plane)
        if not tls_ca and not insecure and not is_loopback(host):
            raise ValueError(
                f"refusing to send the agent token in plaintext to {host}: give --tls-ca, "
                "or --insecure if this network is trusted"
            )
        if not token and not insecure and not is_loopback(host):
            # A control plane on another machine has an auth file (serve refuses a non-loopback address without
            # one unless --insecure-no-auth): without a token every session would be refused. On loopback it may
            # be a development control plane without one; there a missing token is refused at the first session.
            raise ValueError(
                f"FLORIST_AGENT_TOKEN is not set: the control plane at {control_plane} accepts this agent only "
                f"with the token of an 'agent SHA256_HEX {name}' line of its auth file (or give --insecure if it "
                "runs without one, with --insecure-no-auth)"
            )
        if not data_root.is_dir():
            raise ValueError(f"--data-root {data_root} is not a directory")
        if max_clients < 0:
            raise ValueError(f"--max-clients must be 0 (no limit) or more, not {max_clients}")
        return cls(
            control_plane=control_plane,
            name=name,
            data_root=data_root.resolve(),
            token=token,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            insecure=insecure,
            launcher_pool=launcher_pool,
            max_clients=max_clients,
            fl_direct=fl_direct,
        )
