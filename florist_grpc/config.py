"""The frozen settings of `serve` and `agent`, built from their flags' typed values (cli/service.py defines the flags
and their FLORIST_<FLAG> variables) by `Settings.build` / `AgentSettings.build`, which hold the rules between flags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from florist_grpc.domain.projects import project_name_problem
from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.domain.tracking import trackers_problem
from florist_grpc.domain.validation import agent_name_problem
from florist_grpc.launcher_config import LauncherSettings
from florist_grpc.limits import Limits
from florist_grpc.net import LOOPBACK, address_problem, is_loopback, is_wildcard, ports_problem, split_host_port
from florist_grpc.tls_files import TLSConfig, agent_tls_problem, serve_tls


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
    # A source's report is read at most this often; more rarely when many sources report at once or a job has
    # many subscribers (metrics/throttle.py). Faster reports coalesce: they are snapshots.
    report_read_interval_seconds: float = 0.01
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
    # TLS certificates, keys and CAs, and the auth file, are looked at this often (their inode, size and mtime):
    # a renewed file is used without a restart (SIGHUP reloads at once).
    file_reload_seconds: float = 5.0


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
    # The dashboard: the page and the API for browsers (Connect, gRPC-Web) on http://HOST:http_port/; 0 = off.
    http_port: int = 0
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
    # `--launcher` and the Slurm flags (launcher_config.py).
    launcher: LauncherSettings = field(default_factory=LauncherSettings)

    @property
    def jobs_dir(self) -> Path:
        """FL logs and models: the shared dir under a cluster launcher (every node writes there), else the data dir."""
        return (self.launcher.shared_dir or self.data_dir.resolve()) / "jobs"

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
        http_port: int,
        launcher_pool: bool,
        data_roots: Sequence[Path],
        max_running_jobs: int = 0,
        max_running_jobs_per_project: int = 0,
        mlflow_tracking_uri: str = "",
        mlflow_experiment: str = "florist-grpc",
        tensorboard_dir: Path | None = None,
        launcher: LauncherSettings | None = None,
    ) -> Settings:
        """Settings from serve's flags; raise ValueError with a message for the user when they do not fit
        together (named as the flags are)."""
        tls = serve_tls(tls_cert, tls_key, tls_client_ca)
        if problem := ports_problem((("--port", port), ("--metrics-port", metrics_port), ("--http-port", http_port))):
            raise ValueError(problem)
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
            http_port=http_port,
            launcher_pool=launcher_pool,
            data_roots=tuple(root.resolve() for root in data_roots),
            max_running_jobs=max_running_jobs,
            max_running_jobs_per_project=max_running_jobs_per_project,
            mlflow_tracking_uri=mlflow_tracking_uri.strip(),
            mlflow_experiment=mlflow_experiment,
            tensorboard_dir=tensorboard_dir,
            launcher=launcher or LauncherSettings(),
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
    # Its policy (`--allow-project`, `--allow-model`, told in its hello): empty = every project / built-in models.
    policy: SitePolicy = field(default_factory=SitePolicy)
    # `--audit-log`: one JSON line per launch, stop and data check; None = DATA_ROOT/.florist-agent/audit.jsonl.
    audit_log: Path | None = None

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
        allow_projects: Sequence[str] = (),
        allow_models: Sequence[str] = (),
        audit_log: Path | None = None,
    ) -> AgentSettings:
        """AgentSettings from the agent's flags and its token; raise ValueError with a message for the user when
        they do not fit together."""
        if problem := address_problem(control_plane):
            raise ValueError(f"--control-plane {control_plane!r}: {problem}")
        if problem := agent_name_problem(name):
            raise ValueError(f"--name {name!r}: {problem}")
        if problem := agent_tls_problem(tls_ca, tls_cert, tls_key):
            raise ValueError(problem)
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
        for project in allow_projects:
            if problem := project_name_problem(project):
                raise ValueError(f"--allow-project {project!r}: {problem}")
        if any(not model.strip() for model in allow_models):
            raise ValueError("--allow-model needs a model's catalog name")
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
            policy=SitePolicy(tuple(dict.fromkeys(allow_projects)), tuple(dict.fromkeys(allow_models))),
            audit_log=audit_log,
        )
