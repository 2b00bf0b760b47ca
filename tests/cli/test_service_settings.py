"""`serve` and `agent` as a user runs them: each flag (and its FLORIST_<FLAG> variable) reaches the settings the
process is built from, and flags that do not fit together are refused (exit 2) before anything starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from florist_grpc.cli import app
from florist_grpc.config import AgentSettings, Settings
from florist_grpc.domain.site_policy import SitePolicy
from florist_grpc.testing.certificates import Pki
from florist_grpc.tls_files import TLSConfig
from tests.api.test_tls import pki  # noqa: F401 - the throwaway CA fixture


class Built(Exception):
    """Raised by the stand-ins below once a command has built its settings: nothing is started."""

    def __init__(self, settings: Any) -> None:
        super().__init__("built")
        self.settings = settings


class Capture:
    """Runs the real command in-process; the control plane or agent it would start is replaced by a stand-in
    that hands back the settings it was given."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def run(self, *args: str | Path, env: dict[str, str | None] | None = None) -> Result:
        # No FLORIST_* variable of the environment running the tests leaks into the command.
        environment: dict[str, str | None] = {"FLORIST_AGENT_TOKEN": None, **(env or {})}
        return self.runner.invoke(app, [str(a) for a in args], env=environment)

    def settings(self, *args: str | Path, env: dict[str, str | None] | None = None) -> Any:
        result = self.run(*args, env=env)
        assert isinstance(result.exception, Built), (result.exit_code, result.output)
        return result.exception.settings


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    def stand_in(settings: Any, **_: Any) -> None:
        raise Built(settings)

    monkeypatch.setattr("florist_grpc.server.ControlPlane", stand_in)
    monkeypatch.setattr("florist_grpc.agent.Agent", stand_in)
    # Logging is the test run's own: the commands would replace the root logger's handlers.
    monkeypatch.setattr("florist_grpc.cli.service.configure", lambda *_: None)
    monkeypatch.setattr("florist_grpc.cli.agent_command.configure", lambda *_: None)
    yield Capture()


def serve_flags(tmp_path: Path, pki: Pki) -> dict[str, str | None]:  # noqa: F811
    """A value for every serve flag other than its default (None: a switch)."""
    (tmp_path / "auth.txt").write_text("")
    return {
        "--host": "0.0.0.0",
        "--port": "50999",
        "--data-dir": str(tmp_path / "florist"),
        "--mongodb-uri": "mongodb://127.0.0.1:1",
        "--redis-url": "redis://127.0.0.1:2",
        "--auth-file": str(tmp_path / "auth.txt"),
        "--tls-cert": str(pki.cert),
        "--tls-key": str(pki.key),
        "--tls-client-ca": str(pki.ca),
        "--insecure-no-auth": None,
        "--advertise-host": "cp.example.org",
        "--metrics-port": "9100",
        "--http-port": "8080",
        "--no-launcher-pool": None,
        "--data-root": str(pki.ca.parent),
        "--max-running-jobs": "4",
        "--max-running-jobs-per-project": "2",
        "--mlflow-tracking-uri": "http://127.0.0.1:5000",
        "--mlflow-experiment": "team-a",
        "--tensorboard-dir": str(tmp_path / "tensorboard"),
        "--launcher": "slurm",
        "--slurm-partition": "debug",
        "--slurm-account": "lab-a",
        "--slurm-sbatch-arg": "--qos=high",
        "--shared-dir": str(shared_dir(tmp_path)),
    }


def shared_dir(tmp_path: Path) -> Path:
    (tmp_path / "shared").mkdir(exist_ok=True)
    return tmp_path / "shared"


def test_every_serve_flag_and_its_variable_reach_the_settings(
    capture: Capture,
    tmp_path: Path,
    pki: Pki,  # noqa: F811
) -> None:
    flags = serve_flags(tmp_path, pki)
    args = [part for flag, value in flags.items() for part in ([flag] if value is None else [flag, value])]
    from_flags = capture.settings("serve", *args)
    variables = {"FLORIST_" + f[2:].replace("-", "_").upper(): v or "1" for f, v in flags.items()}
    assert capture.settings("serve", env=variables) == from_flags
    defaults = Settings()
    differ = {f.name for f in dataclasses.fields(Settings) if getattr(from_flags, f.name) != getattr(defaults, f.name)}
    # Every setting is some flag's (timeouts and limits are the code's own).
    assert differ == {f.name for f in dataclasses.fields(Settings)} - {"timeouts", "limits"}
    assert from_flags.tls == TLSConfig(pki.cert, pki.key, pki.ca)
    assert (from_flags.port, from_flags.launcher_pool, from_flags.data_dir) == (50999, False, tmp_path / "florist")
    launcher = from_flags.launcher
    assert (launcher.kind, launcher.slurm_partition, launcher.slurm_account) == ("slurm", "debug", "lab-a")
    assert (launcher.slurm_sbatch_args, launcher.shared_dir) == (("--qos=high",), (tmp_path / "shared").resolve())
    assert from_flags.jobs_dir == (tmp_path / "shared").resolve() / "jobs"  # logs and models where nodes see them


def test_serve_without_flags_has_the_default_settings(capture: Capture) -> None:
    assert capture.settings("serve") == Settings()


@pytest.mark.parametrize(
    ("host", "advertise", "expected"),
    [("10.0.0.5", "", "10.0.0.5"), ("0.0.0.0", "", "127.0.0.1"), ("0.0.0.0", "cp.example.org", "cp.example.org")],
)
def test_fl_servers_are_advertised_at_the_advertise_host_else_the_bound_host(
    capture: Capture, host: str, advertise: str, expected: str
) -> None:
    flags = ["--host", host, "--insecure-no-auth", *(["--advertise-host", advertise] if advertise else [])]
    assert capture.settings("serve", *flags).fl_server_host == expected


def agent(capture: Capture, tmp_path: Path, *flags: str, token: str | None = None) -> Any:
    args = ["agent", "--name", "site-a", "--data-root", str(tmp_path), *flags]
    return capture.settings(*args, env={"FLORIST_AGENT_TOKEN": token})


def test_every_agent_flag_and_its_variable_reach_the_settings(
    capture: Capture,
    tmp_path: Path,
    pki: Pki,  # noqa: F811
) -> None:
    flags: dict[str, str | None] = {
        "--control-plane": "cp.example.org:443",
        "--name": "site-b",
        "--data-root": str(tmp_path),
        "--tls-ca": str(pki.ca),
        "--tls-cert": str(pki.client_cert),
        "--tls-key": str(pki.client_key),
        "--insecure": None,
        "--no-launcher-pool": None,
        "--max-clients": "3",
        "--allow-project": "vision,speech",  # a variable takes several as one value: so may a flag
        "--allow-model": "MyNet",
        "--audit-log": str(tmp_path / "audit.jsonl"),
    }
    args = [part for flag, value in flags.items() for part in ([flag] if value is None else [flag, value])]
    from_flags = capture.settings("agent", *args, env={"FLORIST_AGENT_TOKEN": "t"})
    variables = {"FLORIST_" + f[2:].replace("-", "_").upper(): v or "1" for f, v in flags.items()}
    assert capture.settings("agent", env={**variables, "FLORIST_AGENT_TOKEN": "t"}) == from_flags
    assert from_flags == AgentSettings(
        control_plane="cp.example.org:443",
        name="site-b",
        data_root=tmp_path.resolve(),
        token="t",
        tls_ca=pki.ca,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
        insecure=True,
        launcher_pool=False,
        max_clients=3,
        policy=SitePolicy(("vision", "speech"), ("MyNet",)),
        audit_log=tmp_path / "audit.jsonl",
    )
    repeated = ["--allow-project", "vision", "--allow-project", "speech", "--allow-model", "MyNet"]
    assert agent(capture, tmp_path, "--control-plane", "127.0.0.1:1", *repeated).policy == from_flags.policy


def test_plaintext_to_a_non_loopback_control_plane_needs_insecure(capture: Capture, tmp_path: Path) -> None:
    refused = capture.run("agent", "--name", "site-a", "--data-root", tmp_path, "--control-plane", "cp.example.org:443")
    assert refused.exit_code == 2 and "plaintext" in refused.stderr
    settings = agent(capture, tmp_path, "--control-plane", "cp.example.org:443", "--insecure")
    assert settings.insecure and not settings.tls
    with_ca = ("--control-plane", "cp.example.org:443", "--tls-ca", str(tmp_path / "ca.crt"))
    assert agent(capture, tmp_path, *with_ca, token="t").token == "t"
    assert not agent(capture, tmp_path, "--control-plane", "127.0.0.1:50051").tls


def test_a_missing_token_is_refused_at_start_unless_the_control_plane_may_run_without_auth(
    capture: Capture, tmp_path: Path
) -> None:
    remote = ("--control-plane", "cp.example.org:443", "--tls-ca", str(tmp_path / "ca.crt"))
    # Another machine's control plane has an auth file (serve refuses such an address without one).
    refused = capture.run("agent", "--name", "site-a", "--data-root", tmp_path, *remote)
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: FLORIST_AGENT_TOKEN is not set") and "agent SHA256_HEX site-a" in (
        refused.stderr
    )
    # Unless the user says that one runs without (serve --insecure-no-auth on a trusted network)...
    assert agent(capture, tmp_path, *remote, "--insecure").token == ""
    # ... or it is on this machine: a development control plane; one with an auth file refuses the first session.
    for tls in ((), ("--tls-ca", str(tmp_path / "ca.crt"))):
        assert agent(capture, tmp_path, "--control-plane", "127.0.0.1:50051", *tls).token == ""


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--control-plane", "nohost"], "--control-plane 'nohost'"),
        (["--control-plane", "127.0.0.1:1", "--name", "bad name"], "--name 'bad name'"),
        (["--control-plane", "127.0.0.1:1", "--tls-cert", "c.pem"], "--tls-cert and --tls-key must be given together"),
        (["--control-plane", "127.0.0.1:1", "--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-cert needs --tls-ca"),
        (["--control-plane", "127.0.0.1:1", "--data-root", "/nonexistent/dir"], "--data-root /nonexistent/dir is not"),
        (["--control-plane", "127.0.0.1:1", "--max-clients", "-1"], "--max-clients must be 0 (no limit) or more"),
        (["--control-plane", "127.0.0.1:1", "--allow-project", "Vision"], "--allow-project 'Vision': a project name"),
    ],
)
def test_agent_flags_that_do_not_fit_are_refused(capture: Capture, tmp_path: Path, flags: list[str], says: str) -> None:
    result = capture.run("agent", "--name", "site-a", "--data-root", tmp_path, *flags)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {says}"), result.output


def test_data_roots_repeat_as_flags_or_share_one_variable_separated_by_colons(capture: Capture, tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
    expected = tuple(r.resolve() for r in roots)
    assert capture.settings("serve", "--data-root", roots[0], "--data-root", roots[1]).data_roots == expected
    assert capture.settings("serve", env={"FLORIST_DATA_ROOT": f"{roots[0]}:{roots[1]}"}).data_roots == expected
    refused = capture.run("serve", "--data-root", roots[0], "--data-root", tmp_path / "missing")
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"error: --data-root {tmp_path / 'missing'} is not a directory")


@pytest.mark.parametrize("flag", ["--max-running-jobs", "--max-running-jobs-per-project"])
def test_a_negative_queue_limit_is_refused_naming_its_flag(capture: Capture, flag: str) -> None:
    refused = capture.run("serve", flag, "-1")
    assert refused.exit_code == 2 and refused.stderr.startswith(f"error: {flag} must be 0 (no limit) or more")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--mlflow-tracking-uri", "mlruns"], "--mlflow-tracking-uri must be the http(s):// URL"),
        (["--mlflow-tracking-uri", "ftp://host/x"], "--mlflow-tracking-uri must be the http(s):// URL"),
        (["--mlflow-experiment", ""], "--mlflow-experiment must not be empty"),
        (["--mlflow-experiment", "a\nb"], "--mlflow-experiment: at most 500 characters, no control characters"),
        (["--tensorboard-dir", "{file}"], "--tensorboard-dir {file} is not a directory"),
    ],
)
def test_tracker_flags_that_cannot_be_used_are_refused(
    capture: Capture, tmp_path: Path, flags: list[str], says: str
) -> None:
    (tmp_path / "file").write_text("")
    args = [flag.format(file=tmp_path / "file") for flag in flags]
    result = capture.run("serve", *args)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {says.format(file=tmp_path / 'file')}"), (
        result.output
    )


def test_sbatch_args_repeat(capture: Capture, tmp_path: Path) -> None:
    flags = ["--launcher", "slurm", "--shared-dir", str(shared_dir(tmp_path)), "--advertise-host", "10.0.0.5"]
    more = ["--slurm-sbatch-arg", "--qos=high", "--slurm-sbatch-arg", "--exclusive"]
    settings = capture.settings("serve", *flags, *more)
    assert settings.launcher.slurm_sbatch_args == ("--qos=high", "--exclusive")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--launcher", "kubernetes"], "--launcher must be one of local, slurm, not 'kubernetes'"),
        (["--slurm-partition", "debug"], "--slurm-partition needs --launcher slurm"),
        (["--slurm-account", "lab"], "--slurm-account needs --launcher slurm"),
        (["--slurm-sbatch-arg", "--qos=high"], "--slurm-sbatch-arg needs --launcher slurm"),
        (["--shared-dir", "{shared}"], "--shared-dir needs --launcher slurm"),
        (["--launcher", "slurm", "--advertise-host", "10.0.0.5"], "--launcher slurm needs --shared-dir"),
        (["--launcher", "slurm", "--shared-dir", "{shared}/nowhere", "--advertise-host", "h"], "--shared-dir {shared}"),
        (["--launcher", "slurm", "--shared-dir", "{shared}"], "--launcher slurm needs --advertise-host"),
        (
            ["--launcher", "slurm", "--shared-dir", "{shared}", "--advertise-host", "h", "--slurm-partition", "a b"],
            "--slurm-partition 'a b': must be a Slurm name",
        ),
        (
            ["--launcher", "slurm", "--shared-dir", "{shared}", "--advertise-host", "h", "--slurm-account", "-x"],
            "--slurm-account '-x': must be a Slurm name",
        ),
        (
            ["--launcher", "slurm", "--shared-dir", "{shared}", "--advertise-host", "h", "--slurm-sbatch-arg", "qos"],
            "--slurm-sbatch-arg 'qos': must be one sbatch option",
        ),
        (
            [
                "--launcher",
                "slurm",
                "--shared-dir",
                "{shared}",
                "--advertise-host",
                "h",
                "--slurm-sbatch-arg=--job-name=x",
            ],
            "--slurm-sbatch-arg '--job-name=x': --job-name is set by the Slurm launcher itself",
        ),
    ],
)
def test_launcher_flags_that_do_not_fit_are_refused_naming_the_flag(
    capture: Capture, tmp_path: Path, flags: list[str], says: str
) -> None:
    shared = str(shared_dir(tmp_path))
    result = capture.run("serve", *(f.format(shared=shared) for f in flags))
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {says.format(shared=shared)}"), result.output
