"""Pure rules of sites: the data root confinement, the device choice, the agent's flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from florist_grpc.agent.clients import resolve_data_path
from florist_grpc.config import add_agent_arguments, add_serve_arguments, agent_settings_from_args, settings_from_args
from florist_grpc.domain.errors import PermissionDenied
from florist_grpc.fl.device import resolve_device


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.pt").write_bytes(b"x")
    (data / ".florist-agent").mkdir()
    (data / ".florist-agent" / "clients.json").write_text("{}")
    (tmp_path / "secret.pt").write_bytes(b"s")
    (tmp_path / "data-evil").mkdir()
    (tmp_path / "data-evil" / "b.pt").write_bytes(b"e")
    (data / "link.pt").symlink_to(tmp_path / "secret.pt")
    (data / "inner-link.pt").symlink_to(data / "sub" / "a.pt")
    return data


@pytest.mark.parametrize("path", ["sub/a.pt", "./sub/../sub/a.pt", "inner-link.pt", "ABS_INSIDE"])
def test_paths_inside_the_data_root_resolve(root: Path, path: str) -> None:
    given = str(root / "sub" / "a.pt") if path == "ABS_INSIDE" else path
    assert resolve_data_path(root, root / ".florist-agent", given) == (root / "sub" / "a.pt").resolve()


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../secret.pt", "outside"),
        ("sub/../../secret.pt", "outside"),
        ("link.pt", "outside"),
        ("ABS_OUTSIDE", "outside"),
        ("PREFIX_TWIN", "outside"),
        (".florist-agent/clients.json", "state directory"),
        ("sub/missing.pt", "does not exist"),
        ("sub", "not a file"),
        ("", "non-empty"),
    ],
)
def test_paths_escaping_the_data_root_are_refused(root: Path, path: str, why: str) -> None:
    given = {"ABS_OUTSIDE": str(root.parent / "secret.pt"), "PREFIX_TWIN": str(root.parent / "data-evil" / "b.pt")}
    with pytest.raises(PermissionDenied, match=why):
        resolve_data_path(root, root / ".florist-agent", given.get(path, path))


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"),
    [
        ("auto", 0, "cpu"),
        ("auto", 2, "cuda:0"),
        ("", 1, "cuda:0"),
        ("cpu", 2, "cpu"),
        ("cuda", 1, "cuda:0"),
        ("cuda:1", 2, "cuda:1"),
    ],
)
def test_the_device_is_the_first_cuda_device_when_auto_else_as_asked(requested: str, cuda: int, expected: str) -> None:
    assert resolve_device(requested, cuda) == expected


def test_a_cuda_device_the_machine_lacks_is_an_error() -> None:
    with pytest.raises(ValueError, match="cuda:1"):
        resolve_device("cuda:1", 1)


def agent_args(tmp_path: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser, {})
    return parser.parse_args(["--name", "site-a", "--data-root", str(tmp_path), *flags])


def test_plaintext_to_a_non_loopback_control_plane_needs_insecure(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plaintext"):
        agent_settings_from_args(agent_args(tmp_path, "--control-plane", "cp.example.org:443"), {})
    settings = agent_settings_from_args(agent_args(tmp_path, "--control-plane", "cp.example.org:443", "--insecure"), {})
    assert settings.insecure and not settings.tls
    with_ca = agent_args(tmp_path, "--control-plane", "cp.example.org:443", "--tls-ca", str(tmp_path / "ca.crt"))
    assert agent_settings_from_args(with_ca, {"FLORIST_AGENT_TOKEN": "t"}).token == "t"
    assert not agent_settings_from_args(agent_args(tmp_path, "--control-plane", "127.0.0.1:50051"), {}).tls


def test_a_missing_token_is_refused_at_start_unless_the_control_plane_may_run_without_auth(tmp_path: Path) -> None:
    remote = ("--control-plane", "cp.example.org:443", "--tls-ca", str(tmp_path / "ca.crt"))
    # Another machine's control plane has an auth file (serve refuses such an address without one).
    with pytest.raises(ValueError, match="FLORIST_AGENT_TOKEN is not set") as raised:
        agent_settings_from_args(agent_args(tmp_path, *remote), {})
    assert "agent SHA256_HEX site-a" in str(raised.value)
    # Unless the user says that one runs without (serve --insecure-no-auth on a trusted network)...
    assert agent_settings_from_args(agent_args(tmp_path, *remote, "--insecure"), {}).token == ""
    # ... or it is on this machine: a development control plane; one with an auth file refuses the first session.
    for tls in ((), ("--tls-ca", str(tmp_path / "ca.crt"))):
        assert agent_settings_from_args(agent_args(tmp_path, "--control-plane", "127.0.0.1:50051", *tls), {})


@pytest.mark.parametrize(
    "flags",
    [
        ["--control-plane", "nohost"],
        ["--control-plane", "127.0.0.1:1", "--name", "bad name"],
        ["--control-plane", "127.0.0.1:1", "--tls-cert", "c.pem"],
        ["--control-plane", "127.0.0.1:1", "--data-root", "/nonexistent/dir"],
    ],
)
def test_agent_flags_that_do_not_fit_are_refused(tmp_path: Path, flags: list[str]) -> None:
    with pytest.raises(ValueError):
        agent_settings_from_args(agent_args(tmp_path, *flags), {})


@pytest.mark.parametrize(
    ("host", "advertise", "expected"),
    [("10.0.0.5", "", "10.0.0.5"), ("0.0.0.0", "", "127.0.0.1"), ("0.0.0.0", "cp.example.org", "cp.example.org")],
)
def test_fl_servers_are_advertised_at_the_advertise_host_else_the_bound_host(
    host: str, advertise: str, expected: str
) -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser, {})
    flags = ["--host", host, "--insecure-no-auth", *(["--advertise-host", advertise] if advertise else [])]
    assert settings_from_args(parser.parse_args(flags)).fl_server_host == expected
