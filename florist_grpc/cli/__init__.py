"""The `florist-grpc` command: one typer app, commands grouped by what they act on.

Each command is one small function in the module of its group (jobs, training, logs, plot, status, service) and
is registered here; shared flags (--address/--token/--tls-ca/--output, each with its FLORIST_<FLAG> variable)
live in options.py, printing and error reporting in output.py.

Adding a command: write one function in its group's module (a new group gets a new module with its own
`typer.Typer`), give it `address/token/tls_ca/output` parameters typed with the aliases of options.py if it calls
the control plane, decorate it with `@guarded` (errors become one line), and register it below. E.g.
`model download ID --round N --out F` is `download` in models.py, registered with
`app.add_typer(models.app, name="model")`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from florist_grpc.cli import agent_command, datasets, jobs, logs, models, plot, service, status, training

app = typer.Typer(
    name="florist-grpc",
    help="""Federated-learning control plane over gRPC: serve it, and drive jobs from the command line.

Client commands call the control plane at --address (FLORIST_ADDRESS); every command's --help has examples.
Shell completion: florist-grpc --install-completion (bash, zsh, fish, PowerShell).

Examples:
  florist-grpc demo
  florist-grpc serve --data-dir .florist
  florist-grpc run --file examples/fedavg-mlp.yaml""",
    no_args_is_help=True,
    add_completion=True,  # typer's --install-completion / --show-completion
    # click itself says "Did you mean ...?" for an unknown command; typer's own suggestion would say it twice.
    suggest_commands=False,
    # Errors are reported by output.guarded; anything else is a bug, shown as Python shows it.
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    try:
        return version("florist-grpc")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"florist-grpc {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Federated-learning control plane over gRPC."""


# Running the service.
app.command("serve")(service.serve)
app.command("agent")(agent_command.agent)
app.command("demo")(service.demo)
app.command("make-data")(datasets.make_data)
# Client commands.
app.command("catalog")(jobs.catalog)
app.add_typer(jobs.app, name="job")
app.add_typer(training.app, name="train")
app.command("run")(training.run)
app.command("logs")(logs.logs)
app.command("plot")(plot.plot)
app.add_typer(models.app, name="model")
app.command("agents")(status.agents)
app.command("health")(status.health)


def main() -> None:
    """Entry point of the `florist-grpc` script."""
    app(prog_name="florist-grpc")
