"""`florist-grpc agent`: a site's agent, dialling out to the control plane to run its jobs' FL clients."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import grpc
import typer

from florist_grpc.cli.log_setup import configure
from florist_grpc.cli.output import describe_rpc_error, fail
from florist_grpc.cli.service import opt
from florist_grpc.config import AgentSettings, agent_token

log = logging.getLogger("florist_grpc")


def split_list(values: Sequence[str] | None) -> list[str]:
    """A repeatable flag's values; one value may hold several separated by ',' (as its variable does)."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


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
    allow_projects: Annotated[
        list[str] | None,
        opt(
            "--allow-project",
            "Run only jobs of this project (repeatable; FLORIST_ALLOW_PROJECT takes several separated by ','). "
            "Default: every project its token allows.",
        ),
    ] = None,
    allow_models: Annotated[
        list[str] | None,
        opt(
            "--allow-model",
            "Run only this model (repeatable; FLORIST_ALLOW_MODEL takes several separated by ','). Default: the "
            "built-in models only; a plugin's model runs only when named.",
        ),
    ] = None,
    audit_log: Annotated[
        Path | None,
        opt("--audit-log", "One JSON line per launch, stop and data check ('-': stderr). Default: in DATA_ROOT."),
    ] = None,
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
    FLORIST_AGENT_TOKEN (an `agent TOKEN_SHA256 NAME` line of the control plane's auth file). Its TLS files are
    read again when they change, or at once on SIGHUP, without dropping its session.

    Examples:
      florist-grpc agent --control-plane cp.example.org:50051 --name site-a --data-root /data --tls-ca ca.pem
      florist-grpc agent --control-plane localhost:50051 --name site-a --data-root ./data
      florist-grpc agent --control-plane localhost:50051 --name site-a --data-root ./data --max-clients 2
      florist-grpc agent --control-plane localhost:50051 --name site-a --data-root ./data --allow-project vision \
          --allow-model MLP --allow-model MNIST_CNN
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
            allow_projects=split_list(allow_projects),
            allow_models=split_list(allow_models),
            audit_log=audit_log,
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
        loop.add_signal_handler(signal.SIGHUP, running.reload)  # renewed TLS files: read them now
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
