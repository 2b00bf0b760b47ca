"""Long-running commands: `serve`, `agent`, `demo`, and the data helper `make-data`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import grpc
import typer

from florist_grpc.cli.log_setup import announce, configure
from florist_grpc.cli.options import Output, OutputFormat
from florist_grpc.cli.output import describe_rpc_error, fail, guarded, print_json
from florist_grpc.config import AgentSettings, Settings, agent_token

log = logging.getLogger("florist_grpc")


def _env(flag: str) -> str:
    return "FLORIST_" + flag.lstrip("-").replace("-", "_").upper()


def opt(flag: str, help_text: str) -> typer.models.OptionInfo:
    """A serve/agent flag with its FLORIST_<FLAG> environment variable."""
    option: typer.models.OptionInfo = typer.Option(flag, envvar=_env(flag), show_envvar=True, help=help_text)
    return option


async def serve_until_signal(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], ready_line: Callable[[], str]
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
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
) -> None:
    """Run the control plane (gRPC API, job store, Redis, FL process supervision).

    Every flag is also a FLORIST_<FLAG> environment variable; Ctrl-C or SIGTERM stops it.

    Examples:
      florist-grpc serve
      florist-grpc serve --port 0 --data-dir /tmp/florist
      florist-grpc serve --host 0.0.0.0 --auth-file auth.txt --tls-cert server.pem --tls-key server.key
      florist-grpc serve --max-running-jobs 4 --max-running-jobs-per-project 2
      florist-grpc serve --mlflow-tracking-uri http://127.0.0.1:5000 --tensorboard-dir runs
    """
    from florist_grpc.api.auth import AuthFileError
    from florist_grpc.server import ControlPlane

    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be text or json, not {log_format!r}", 2)
    try:
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
            launcher_pool=not no_launcher_pool,
            data_roots=data_roots or (),
            max_running_jobs=max_running_jobs,
            max_running_jobs_per_project=max_running_jobs_per_project,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            tensorboard_dir=tensorboard_dir,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    configure(log_format)
    plane = ControlPlane(settings)
    try:
        asyncio.run(
            serve_until_signal(
                plane.start, plane.stop, lambda: f"florist-grpc listening on {settings.host}:{plane.port}"
            )
        )
    except (AuthFileError, OSError, RuntimeError) as exc:
        raise fail(str(exc)) from None


def agent(
    control_plane: Annotated[str, opt("--control-plane", "host:port of the control plane to dial.")],
    name: Annotated[str, opt("--name", "This agent's name: jobs name it in ClientInfo.agent.")],
    data_root: Annotated[Path, opt("--data-root", "Datasets FL clients may read; job data paths are relative to it.")],
    tls_ca: Annotated[Path | None, opt("--tls-ca", "CA of the control plane's certificate (PEM); enables TLS.")] = None,
    tls_cert: Annotated[Path | None, opt("--tls-cert", "Client certificate for mutual TLS (PEM).")] = None,
    tls_key: Annotated[Path | None, opt("--tls-key", "Client private key for mutual TLS (PEM).")] = None,
    insecure: Annotated[
        bool, opt("--insecure", "Allow plaintext (and no token) to a non-loopback control plane: a trusted network.")
    ] = AgentSettings.insecure,
    log_format: Annotated[str, opt("--log-format", "Log lines as text or json.")] = "text",
    no_launcher_pool: Annotated[
        bool, opt("--no-launcher-pool", "Spawn each FL client instead of forking it from a preloaded launcher pool.")
    ] = not AgentSettings.launcher_pool,
    max_clients: Annotated[
        int, opt("--max-clients", "FL clients this site runs at once; jobs beyond it wait in the queue. 0 = no limit.")
    ] = AgentSettings.max_clients,
    fl_direct: Annotated[
        bool,
        opt(
            "--fl-direct",
            "FL clients connect to their FL servers' ports directly instead of over this agent's connection "
            "(the control plane's one port): the site must then reach those ports.",
        ),
    ] = AgentSettings.fl_direct,
) -> None:
    """Run an agent on a data-holding machine: it dials out to the control plane and runs its jobs' FL clients.

    It opens no port, and its FL clients' traffic rides its one connection (unless --fl-direct). Its token is
    FLORIST_AGENT_TOKEN (an `agent TOKEN_SHA256 NAME` line of the control plane's auth file).

    Examples:
      florist-grpc agent --control-plane cp.example.org:50051 --name site-a --data-root /data --tls-ca ca.pem
      florist-grpc agent --control-plane localhost:50051 --name site-a --data-root ./data
      florist-grpc agent --control-plane localhost:50051 --name site-a --data-root ./data --max-clients 2
    """
    from florist_grpc.agent import Agent
    from florist_grpc.agent.session import Refused, Replaced

    try:
        settings = AgentSettings.build(
            control_plane=control_plane,
            name=name,
            data_root=data_root,
            token=agent_token(os.environ),
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            insecure=insecure,
            launcher_pool=not no_launcher_pool,
            max_clients=max_clients,
            fl_direct=fl_direct,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    configure(log_format)

    def describe(exc: grpc.RpcError) -> str:
        # The CLI's own description of a failed call, hints included (an agent without --tls-ca against a TLS
        # control plane gets the same hint as any command).
        return describe_rpc_error(exc, tls=settings.tls)

    async def run() -> None:
        running = Agent(settings, describe_failure=describe)
        await running.start()
        session = asyncio.create_task(running.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, session.cancel)
        try:
            await session
        except asyncio.CancelledError:
            log.info("shutting down")
        except Replaced as exc:
            # Leave the clients and the site's Redis running: the agent that replaced us may adopt them.
            raise fail(f"another agent connected as {settings.name}: {exc}") from None
        except Refused as exc:
            await running.stop(leave_clients=True)  # a wrong token must not end training: fixed, it adopts them
            raise fail(
                f"the control plane at {settings.control_plane} refused agent {settings.name}: {exc} "
                f"(FLORIST_AGENT_TOKEN must be the token of an 'agent SHA256_HEX {settings.name}' line of its "
                "auth file)",
                2,
            ) from None
        await running.stop()

    try:
        asyncio.run(run())
    except typer.Exit:
        raise  # already said (click's Exit is a RuntimeError: it must not be reported a second time)
    except (OSError, RuntimeError) as exc:
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


@guarded
def make_data(
    out: Annotated[Path, typer.Option(help="Directory to write client0.pt, client1.pt, ... into.")],
    dataset: Annotated[str, typer.Option(help="digits (scikit-learn's 8x8 digits) or synthetic.")] = "digits",
    clients: Annotated[int, typer.Option(help="Number of clients (one file each).")] = 2,
    partition: Annotated[str, typer.Option(help="iid, or dirichlet (label skew per client).")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration: smaller = more skewed.")] = 0.5,
    file_format: Annotated[str, typer.Option("--format", help="pt, npz or csv.")] = "pt",
    image: Annotated[bool, typer.Option("--image", help="digits as [1, 8, 8] images (for CNN).")] = False,
    samples: Annotated[int, typer.Option(help="synthetic: samples per client.")] = 600,
    non_iid: Annotated[bool, typer.Option("--non-iid", help="Same as --partition dirichlet.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model: Annotated[str, typer.Option(help="synthetic: shape the data for this model (MLP or MNIST_CNN).")] = "MLP",
    output: OutputFormat = Output.text,
) -> None:
    """Write a dataset partitioned over clients (one file each); prints one path per client.

    Each file is what one client's data_path in a job names.

    Examples:
      florist-grpc make-data --out data
      florist-grpc make-data --out data --clients 4 --partition dirichlet --alpha 0.3
      florist-grpc make-data --out data --dataset synthetic --model MNIST_CNN --format npz
    """
    from florist_grpc.fl.make_data import FORMATS, SYNTHETIC_SHAPES, write_digits, write_synthetic

    choices = {
        "--dataset": (dataset, ("digits", "synthetic")),
        "--partition": (partition, ("iid", "dirichlet")),
        "--format": (file_format, tuple(FORMATS)),
        "--model": (model, tuple(sorted(SYNTHETIC_SHAPES))),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise fail(f"{flag} must be one of {', '.join(allowed)}, not {value!r}", 2)
    scheme = "dirichlet" if non_iid else partition
    if dataset == "digits":
        paths = write_digits(out, clients, scheme, alpha, seed, image, file_format)
    else:
        paths = write_synthetic(out, clients, samples, scheme == "iid", seed, model, file_format)
    if output == Output.json:
        print_json({"paths": [str(p) for p in paths]})
    else:
        print("\n".join(str(p) for p in paths))
