"""The README's site, certificate and production recipes, run as written: what they make is what the control
plane, the auth file and compose.yaml need."""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from florist_grpc.api import auth
from florist_grpc.config import AgentSettings, Settings
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig
from tests.test_compose import ROOT

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def shell_blocks(heading: str) -> list[str]:
    """The ```sh blocks of the README section `## heading`."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def run_shell(script: str, cwd: Path) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False, cwd=cwd, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_the_site_token_command_writes_the_token_for_the_site_and_its_hash_for_the_auth_file(tmp_path: Path) -> None:
    command = next(line for line in shell_blocks("Run a site")[0].splitlines() if line.startswith("python3 -c"))
    run_shell(command, tmp_path)
    token = (tmp_path / "site-a.token").read_text().strip()
    assert (tmp_path / "site-a.token").stat().st_mode & 0o077 == 0, "the token is readable by its owner alone"
    assert (tmp_path / "tokens.txt").read_text() == f"agent {sha256(token)} site-a\n"
    if "agent" in auth.ROLES:  # the `agent` role arrives with issue 10's agent session
        principal = next(iter(auth.load_auth_file(tmp_path / "tokens.txt").values()))
        assert (principal.role, principal.name) == ("agent", "site-a")


def health(address: str, ca: bytes, name: str) -> int:
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca), options=options) as channel:
        request = health_pb2.HealthCheckRequest()
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the recipe uses the openssl command")
def test_the_certificate_recipe_serves_tls_for_the_advertised_host_and_nothing_else(tmp_path: Path) -> None:
    run_shell(shell_blocks("Certificates for a test setup")[0], tmp_path)
    secrets = tmp_path / "secrets"
    plane = ControlPlaneThread.in_dir(
        tmp_path / "florist", tls=TLSConfig(secrets / "server.pem", secrets / "server-key.pem")
    )
    try:
        ca = (secrets / "ca.pem").read_bytes()
        for name in ("controlplane", "localhost"):  # compose's --advertise-host, and the host's own probes
            assert health(plane.address, ca, name) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            health(plane.address, ca, "elsewhere.example.org")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        plane.stop()


def test_the_production_token_script_gives_compose_its_tokens_and_the_auth_file_their_hashes(
    tmp_path: Path,
) -> None:
    block = shell_blocks("Production layout")[0]
    script = block.split("python3 - <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    (tmp_path / "secrets").mkdir()
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    lines = (tmp_path / "secrets" / "auth.txt").read_text().splitlines()
    assert f"agent {sha256(env['SITE_A_TOKEN'])} site-a" in lines
    assert f"agent {sha256(env['SITE_B_TOKEN'])} site-b" in lines
    admin = (tmp_path / "secrets" / "admin.token").read_text().strip()
    assert f"admin {sha256(admin)} admin" in lines
    for written in (".env", "secrets/auth.txt", "secrets/admin.token"):
        assert (tmp_path / written).stat().st_mode & 0o077 == 0, written
    # compose.yaml takes each site's token from exactly the variables the script writes.
    compose_text = (ROOT / "compose.yaml").read_text()
    assert set(env) == set(re.findall(r"\$\{(SITE_[AB]_TOKEN)", compose_text))


@pytest.mark.parametrize("command", ["serve", "agent"])
def test_the_configuration_reference_lists_every_flag_of_serve_and_agent_with_its_env_var(command: str) -> None:
    import typer.main

    from florist_grpc.cli import app

    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    options = {(p.opts[0], p.envvar) for p in click_command.params if p.opts[0].startswith("--")}
    assert options, "the command has flags"
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = section.split(f"`florist-grpc {command}`", 1)[1].split("\n\n", 2)[1]  # the table after its heading
    for flag, envvar in options:
        assert f"`{flag}`" in table and f"`{envvar}`" in table, (flag, envvar)
    # Every input of the settings is a flag of the command, so a row of this table (a switch that turns a setting
    # off is named no_<setting>; the agent's token is FLORIST_AGENT_TOKEN, read by name and listed apart).
    build = {"serve": Settings.build, "agent": AgentSettings.build}[command]
    names = {p.name for p in click_command.params}
    inputs = set(inspect.signature(build).parameters) - {"token"}
    assert {i for i in inputs if i not in names and f"no_{i}" not in names} == set()
