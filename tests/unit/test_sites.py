"""Pure rules of sites: the data root confinement and the device choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from florist_grpc.agent.clients import resolve_data_path
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
