"""Help and discovery: an Examples section in every command's --help (each example a valid command line of that
command), shell completion, and one suggestion for a mistyped command."""

from __future__ import annotations

import shlex

import click
import pytest
import typer
from typer.testing import CliRunner

from florist_grpc.cli import app
from tests.cli.conftest import Invoke

ROOT = typer.main.get_command(app)
# What ends the command line itself in an example (a pipe, a redirection, a second command).
SHELL_OPERATORS = frozenset({"|", ">", ">>", "&&", ";", "&"})


def every_command(command: click.Command = ROOT, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command and group of the app, the app itself first."""
    subcommands = command.commands.items() if isinstance(command, click.Group) else []
    return [path, *(p for name, sub in subcommands for p in every_command(sub, (*path, name)))]


def examples(help_text: str) -> list[str]:
    """The indented `florist-grpc ...` lines of the Examples section of a rendered --help."""
    section = help_text.split("Examples:", 1)[1]
    out = []
    for line in section.splitlines()[1:]:
        if not line.strip().startswith("florist-grpc"):
            break
        out.append(line.strip())
    return out


def parse(example: str) -> tuple[tuple[str, ...], click.Context]:
    """The command an example runs and its parsed parameters (click raises on an unknown flag or bad value)."""
    words = shlex.split(example)
    cut = next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))
    args = words[1:cut]
    command, path = ROOT, ()
    while isinstance(command, click.Group):
        name, args = args[0], args[1:]
        command, path = command.commands[name], (*path, name)
    return path, command.make_context(" ".join(("florist-grpc", *path)), args)


def test_the_walk_finds_every_command() -> None:
    paths = every_command()
    assert len(paths) >= 21 and ("job", "create") in paths and ("train",) in paths and ("serve",) in paths


@pytest.mark.parametrize("path", every_command(), ids=lambda p: " ".join(p) or "florist-grpc")
def test_every_help_has_examples_that_are_valid_command_lines_of_that_command(
    cli: Invoke, path: tuple[str, ...]
) -> None:
    result = cli(*path, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Examples:" in result.stdout, f"{path}: no Examples section"
    found = examples(result.stdout)
    assert found, f"{path}: an empty Examples section"
    for example in found:
        ran, context = parse(example)
        assert ran[: len(path)] == path, f"{path}: the example {example!r} runs {ran}"
        context.close()


def test_shell_completion_completes_commands_and_can_be_installed() -> None:
    runner = CliRunner()
    env = {"_FLORIST_GRPC_COMPLETE": "complete_bash", "COMP_WORDS": "florist-grpc train w", "COMP_CWORD": "2"}
    completed = runner.invoke(app, [], env=env, prog_name="florist-grpc")
    assert completed.exit_code == 0 and completed.stdout.split() == ["watch"]
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="florist-grpc")
    assert shown.exit_code == 0 and "_florist_grpc_completion" in shown.stdout


@pytest.mark.parametrize(("args", "suggestion"), [(["jobs"], "'job'"), (["job", "lst"], "'list'")])
def test_a_mistyped_command_is_suggested_once(cli: Invoke, args: list[str], suggestion: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.count("Did you mean") == 1 and suggestion in result.stderr
