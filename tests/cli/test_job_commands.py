"""`job create|list|get|delete`, `catalog`, `health`, `--version` and help, in-process against a live control plane."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import typer

from florist_grpc.cli import app
from florist_grpc.testing.plane import ControlPlaneThread
from tests.cli.conftest import Invoke

JOB_YAML = """\
# a two-client FedAvg job; data paths are relative to this file
job:
  model: MLP
  strategy: FEDAVG
  optimizer: SGD
  client_type: FEDAVG
  server_config: {n_server_rounds: 2, batch_size: 32, local_epochs: 1}
  clients:
    - data_path: data/client0.pt
    - data_path: /abs/client1.pt
"""


def leaf_commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        return [leaf for name, sub in command.commands.items() for leaf in leaf_commands(sub, (*path, name))]
    return [(path, command)]


def test_every_command_and_flag_has_help_and_connection_flags_name_their_env_var() -> None:
    leaves = leaf_commands(typer.main.get_command(app))
    assert len(leaves) >= 17
    for path, command in leaves:
        assert command.help, f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path} {param.opts} has no help"
        names = {p.name: p for p in command.params}
        if "address" in names and path[0] not in ("serve", "agent"):
            envvars = {names[n].envvar for n in ("address", "token", "tls_ca", "output")}
            assert envvars == {"FLORIST_ADDRESS", "FLORIST_TOKEN", "FLORIST_TLS_CA", "FLORIST_OUTPUT"}, path


def test_help_text_shows_the_env_var(cli: Invoke) -> None:
    result = cli("job", "list", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "FLORIST_ADDRESS" in result.stdout and "FLORIST_TOKEN" in result.stdout and "--filter" in result.stdout


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("florist-grpc ")


def test_create_from_yaml_resolves_relative_data_paths_against_the_file(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    (tmp_path / "job.yaml").write_text(JOB_YAML)
    created = cli("job", "create", "--file", tmp_path / "job.yaml", "--address", plane.address)
    assert created.exit_code == 0, created.stderr
    job_id = created.stdout.strip()
    shown = cli("job", "get", job_id, "--address", plane.address, "--output", "json")
    job = json.loads(shown.stdout)
    assert [c["data_path"] for c in job["clients"]] == [str(tmp_path / "data" / "client0.pt"), "/abs/client1.pt"]
    assert job["state"] == "JOB_STATE_NOT_STARTED"


def test_validate_only_stores_nothing(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB_YAML)
    result = cli("job", "create", "-f", tmp_path / "job.yaml", "--validate-only", "--address", plane.address)
    assert result.exit_code == 0, result.stderr
    assert "is valid" in result.stdout
    listed = cli("job", "list", "--address", plane.address, "-o", "json")
    assert json.loads(listed.stdout).get("jobs", []) == []


def test_unknown_field_is_one_line_naming_the_file_and_field(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB_YAML.replace("  model: MLP", "  model: MLP\n  modle: CNN"))
    result = cli("job", "create", "--file", path)
    assert result.exit_code == 2
    assert result.stderr == f'error: {path}: unknown field "modle" in job\n'
    assert "Traceback" not in result.output


def test_unknown_field_inside_a_client_names_where(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"model": "MLP", "clients": [{"data_path": "/d", "datapath": "/e"}]}))
    result = cli("job", "create", "--file", path)
    assert result.exit_code == 2
    assert f'{path}: unknown field "datapath" in job.clients' in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("job.json", '{\n  "model": "MLP",\n  "strategy" "FEDAVG"\n}', ":3:"),
        ("job.yaml", "job:\n  model: [MLP\n", ":3"),
    ],
)
def test_syntax_errors_name_the_file_and_line(cli: Invoke, tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = cli("job", "create", "--file", path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}{where}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_file_is_one_line(cli: Invoke, tmp_path: Path) -> None:
    result = cli("job", "create", "--file", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot read {tmp_path / 'nope.json'}")


def test_server_validation_errors_print_code_and_field_violations(
    cli: Invoke, plane: ControlPlaneThread, tmp_path: Path
) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"model": "NOPE", "strategy": "FEDAVG", "clients": [{"data_path": "/d"}]}))
    result = cli("job", "create", "--file", path, "--address", plane.address)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "  job.model: " in result.stderr
    assert "Traceback" not in result.output


def test_list_filter_get_delete_with_json_output(cli: Invoke, plane: ControlPlaneThread, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB_YAML)
    ids = [
        cli("job", "create", "-f", tmp_path / "job.yaml", "--address", plane.address).stdout.strip() for _ in range(3)
    ]
    page = json.loads(cli("job", "list", "--page-size", "2", "--address", plane.address, "-o", "json").stdout)
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = cli(
        "job",
        "list",
        "--page-size",
        "2",
        "--page-token",
        page["next_page_token"],
        "--address",
        plane.address,
        "-o",
        "json",
    )
    assert [j["id"] for j in json.loads(rest.stdout)["jobs"]] == ids[:1]
    none = cli("job", "list", "--filter", "state = IN_PROGRESS", "--address", plane.address, "-o", "json")
    assert json.loads(none.stdout).get("jobs", []) == []
    mlp = cli("job", "list", "--filter", 'model = "MLP" AND state = NOT_STARTED', "--address", plane.address)
    assert all(i in mlp.stdout for i in ids)
    deleted = cli("job", "delete", ids[0], "--address", plane.address, "-o", "json")
    assert json.loads(deleted.stdout) == {"job_id": ids[0], "deleted": True}
    gone = cli("job", "get", ids[0], "--address", plane.address)
    assert gone.exit_code == 1 and gone.stderr.startswith("error: NOT_FOUND: ")


def test_a_bad_filter_names_the_filter_field(cli: Invoke, plane: ControlPlaneThread) -> None:
    result = cli("job", "list", "--filter", "creator = me", "--address", plane.address)
    assert result.exit_code == 1
    assert "INVALID_ARGUMENT" in result.stderr and "  filter: cannot filter on 'creator'" in result.stderr


def test_catalog_and_health(cli: Invoke, plane: ControlPlaneThread) -> None:
    catalog = cli("catalog", "--address", plane.address)
    assert catalog.exit_code == 0 and "FEDAVG" in catalog.stdout and "MLP" in catalog.stdout
    strategies = json.loads(cli("catalog", "--address", plane.address, "-o", "json").stdout)["strategies"]
    assert "FEDPROX" in {s["name"] for s in strategies}
    health = cli("health", "--address", plane.address, "-o", "json")
    assert health.exit_code == 0 and json.loads(health.stdout) == {"status": "SERVING"}


def test_address_from_the_environment(cli: Invoke, plane: ControlPlaneThread) -> None:
    result = cli("health", env={"FLORIST_ADDRESS": plane.address})
    assert result.exit_code == 0 and result.stdout.strip() == "SERVING"


def test_unreachable_server_is_one_error_with_a_hint(cli: Invoke) -> None:
    from florist_grpc.net import free_service_port

    result = cli("job", "list", "--address", f"127.0.0.1:{free_service_port()}")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: UNAVAILABLE: ")
    assert "--tls-ca" in result.stderr and "Traceback" not in result.output
