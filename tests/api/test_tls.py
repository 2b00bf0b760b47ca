"""TLS and mutual TLS on the control plane (--tls-cert/--tls-key[/--tls-client-ca])."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from florist_grpc.testing.certificates import Pki, issue_pki
from florist_grpc.testing.plane import ControlPlaneThread
from florist_grpc.tls_files import TLSConfig


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return issue_pki(tmp_path_factory.mktemp("pki"))


def catalog(channel: grpc.Channel) -> int:
    stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    return len(stub.GetCatalog(catalog_service_pb2.GetCatalogRequest(), timeout=5).strategies)


@pytest.fixture
def tls_plane(tmp_path: Path, pki: Pki) -> Iterator[ControlPlaneThread]:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key))
    yield plane
    plane.stop()


def test_tls_clients_that_trust_the_ca_are_served_and_plaintext_is_refused(
    tls_plane: ControlPlaneThread, pki: Pki
) -> None:
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    with grpc.secure_channel(f"localhost:{tls_plane.plane.port}", credentials) as channel:
        assert catalog(channel) > 0
    with grpc.insecure_channel(f"localhost:{tls_plane.plane.port}") as channel, pytest.raises(grpc.RpcError):
        catalog(channel)


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, pki: Pki) -> None:
    plane = ControlPlaneThread.in_dir(tmp_path / "florist", tls=TLSConfig(pki.cert, pki.key, client_ca_file=pki.ca))
    try:
        address = f"localhost:{plane.plane.port}"
        anonymous = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        with grpc.secure_channel(address, anonymous) as channel, pytest.raises(grpc.RpcError):
            catalog(channel)
        identified = grpc.ssl_channel_credentials(
            pki.ca.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
        )
        with grpc.secure_channel(address, identified) as channel:
            assert catalog(channel) > 0
    finally:
        plane.stop()
