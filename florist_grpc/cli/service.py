"""Long-running commands: `serve` and `demo` (`agent` is in agent_command.py, `make-data` in datasets.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from florist_grpc.cli.log_setup import announce, configure
from florist_grpc.cli.output import fail, guarded
from florist_grpc.config import Settings
from florist_grpc.launcher_config import LauncherSettings

log = logging.getLogger("florist_grpc")


def _env(flag: str) -> str:
    return "FLORIST_" + flag.lstrip("-").replace("-", "_").upper()


def opt(flag: str, help_text: str) -> typer.models.OptionInfo:
    """A serve/agent flag with its FLORIST_<FLAG> environment variable."""
    option: typer.models.OptionInfo = typer.Option(flag, envvar=_env(flag), show_envvar=True, help=help_text)
    return option


async def serve_until_signal(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    ready_line: Callable[[], str],
    reload: Callable[[], None] | None = None,
) -> None:
    """Start, announce, and stop at SIGINT or SIGTERM; SIGHUP calls `reload` (files read again, nothing dropped)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    await start()
    announce(ready_line())
    await stopping.wait()
    log.info("shutting down")
    await stop()


def serve(
    host: Annotated[str, opt("--host", "Address to bind.")] = Settings.host,
    port: Annotated[int, opt("--port", "Port to bind; 0 picks a free one.")] = Settings.port,
    data_dir: Annotated[Path, opt("--data-dir", "SQLite store, embedded Redis and FL logs.")] = Settings.data_dir,
    mongodb_uri: Annotated[
        str, opt("--mongodb-uri", "Use this MongoDB instead of the embedded SQLite store.")
    ] = Settings.mongodb_uri,
    redis_url: Annotated[str, opt("--redis-url", "Use this Redis instead of starting one.")] = Settings.redis_url,
    auth_file: Annotated[
        Path | None, opt("--auth-file", "Tokens, lines of 'ROLE SHA256_HEX [NAME [PROJECTS]]'.")
    ] = None,
    tls_cert: Annotated[Path | None, opt("--tls-cert", "Server certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, opt("--tls-key", "Server private key (PEM).")] = None,
    tls_client_ca: Annotated[
        Path | None, opt("--tls-client-ca", "Require client certificates signed by this CA.")
    ] = None,
    insecure_no_auth: Annotated[
        bool, opt("--insecure-no-auth", "Allow serving without --auth-file on a non-loopback address.")
    ] = Settings.insecure_no_auth,
    metrics_port: Annotated[
        int, opt("--metrics-port", "Serve Prometheus metrics on this port; 0 = off.")
    ] = Settings.metrics_port,
    http_port: Annotated[
        int,
        opt("--http-port", "Serve the dashboard (web page and the API for browsers) on this port; 0 = off."),
    ] = Settings.http_port,
    log_format: Annotated[str, opt("--log-format", "Log lines as text or json.")] = "text",
    advertise_host: Annotated[
        str, opt("--advertise-host", "Host agents' FL clients reach FL servers at (default: --host unless wildcard).")
    ] = Settings.advertise_host,
    no_launcher_pool: Annotated[
        bool, opt("--no-launcher-pool", "Spawn each FL process instead of forking it from a preloaded launcher pool.")
    ] = not Settings.launcher_pool,
    data_roots: Annotated[
        list[Path] | None,
        opt(
            "--data-root",
            "Local clients' data files must lie under one of these directories, symlinks resolved (repeatable; "
            "FLORIST_DATA_ROOT takes several separated by ':'). Default: any absolute path.",
        ),
    ] = None,
    max_running_jobs: Annotated[
        int, opt("--max-running-jobs", "Jobs that run at once; StartTraining queues the rest. 0 = no limit.")
    ] = Settings.max_running_jobs,
    max_running_jobs_per_project: Annotated[
        int, opt("--max-running-jobs-per-project", "Jobs of one project that run at once. 0 = no limit.")
    ] = Settings.max_running_jobs_per_project,
    mlflow_tracking_uri: Annotated[
        str, opt("--mlflow-tracking-uri", "Log every job as a run of this MLflow tracking server (http(s)://...).")
    ] = Settings.mlflow_tracking_uri,
    mlflow_experiment: Annotated[
        str, opt("--mlflow-experiment", "MLflow experiment of the jobs that name none (Job.tracking.experiment).")
    ] = Settings.mlflow_experiment,
    tensorboard_dir: Annotated[
        Path | None,
        opt("--tensorboard-dir", "Write every job's metrics as TensorBoard event files under DIR/<job id>/."),
    ] = None,
    launcher: Annotated[str, opt("--launcher", "Where FL servers and local clients run: local or slurm.")] = "local",
    slurm_partition: Annotated[str, opt("--slurm-partition", "Slurm partition of the FL processes.")] = "",
    slurm_account: Annotated[str, opt("--slurm-account", "Slurm account of the FL processes.")] = "",
    slurm_sbatch_args: Annotated[
        list[str] | None, opt("--slurm-sbatch-arg", "One more sbatch option, e.g. --qos=high (repeatable).")
    ] = None,
    shared_dir: Annotated[
        Path | None, opt("--shared-dir", "Under --launcher slurm: a directory every node sees (logs, models).")
    ] = None,
) -> None:
    """Run the control plane (gRPC API, job store, Redis, FL process supervision).

    Every flag is also a FLORIST_<FLAG> environment variable; Ctrl-C or SIGTERM stops it. The TLS files and the
    auth file are read again when they change, or at once on SIGHUP, without dropping sessions or jobs.

    Examples:
      florist-grpc serve
      florist-grpc serve --port 0 --data-dir /tmp/florist
      florist-grpc serve --host 0.0.0.0 --auth-file auth.txt --tls-cert server.pem --tls-key server.key
      florist-grpc serve --max-running-jobs 4 --max-running-jobs-per-project 2
      florist-grpc serve --mlflow-tracking-uri http://127.0.0.1:5000 --tensorboard-dir runs
      florist-grpc serve --launcher slurm --shared-dir /shared/florist --advertise-host 10.0.0.5
    """
    from florist_grpc.api.auth import AuthFileError
    from florist_grpc.server import ControlPlane

    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be text or json, not {log_format!r}", 2)
    try:
        launch = LauncherSettings.build(
            launcher=launcher,
            slurm_partition=slurm_partition,
            slurm_account=slurm_account,
            slurm_sbatch_args=slurm_sbatch_args or (),
            shared_dir=shared_dir,
            advertise_host=advertise_host,
            redis_url=redis_url,
        )
        settings = Settings.build(
            host=host,
            port=port,
            data_dir=data_dir,
            mongodb_uri=mongodb_uri,
            redis_url=redis_url,
            auth_file=auth_file,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            insecure_no_auth=insecure_no_auth,
            advertise_host=advertise_host,
            metrics_port=metrics_port,
            http_port=http_port,
            launcher_pool=not no_launcher_pool,
            data_roots=data_roots or (),
            max_running_jobs=max_running_jobs,
            max_running_jobs_per_project=max_running_jobs_per_project,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            tensorboard_dir=tensorboard_dir,
            launcher=launch,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    configure(log_format)
    plane = ControlPlane(settings)
    try:
        asyncio.run(
            serve_until_signal(
                plane.start, plane.stop, lambda: f"florist-grpc listening on {settings.host}:{plane.port}", plane.reload
            )
        )
    except (AuthFileError, OSError, RuntimeError) as exc:
        raise fail(str(exc)) from None


@guarded
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its store, Redis, data and logs.")] = Path(
        ".florist-demo"
    ),
    rounds: Annotated[int, typer.Option(help="FL rounds.")] = 3,
    clients: Annotated[int, typer.Option(help="FL clients.")] = 2,
) -> None:
    """Serve, train a FedAvg job on synthetic data through the gRPC API, and show its progress.

    It serves on a free port, writes the 8x8 digits under --data-dir for each client and stops when the job ends.

    Examples:
      florist-grpc demo
      florist-grpc demo --rounds 5 --clients 3 --data-dir /tmp/florist-demo
    """
    from florist_grpc.demo import run_demo

    configure()
    raise typer.Exit(asyncio.run(run_demo(data_dir, rounds, clients)))
