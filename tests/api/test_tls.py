"""TLS and mutual TLS on the control plane (--tls-cert/--tls-key[/--tls-client-ca])."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from florist_grpc.config import TLSConfig
from florist_grpc.proto.florist.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from tests.helpers import PlaneThread

Pem = tuple[bytes, bytes]


def issue(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = issue("florist test CA", None)
    files: dict[str, Path] = {}
    for name, (cert, key) in {"ca": ca, "server": issue("localhost", ca), "client": issue("a client", ca)}.items():
        cert_pem, key_pem = pem(cert, key)
        files[f"{name}.crt"] = directory / f"{name}.crt"
        files[f"{name}.key"] = directory / f"{name}.key"
        files[f"{name}.crt"].write_bytes(cert_pem)
        files[f"{name}.key"].write_bytes(key_pem)
    return files


def catalog(channel: grpc.Channel) -> int:
    stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    return len(stub.GetCatalog(catalog_service_pb2.GetCatalogRequest(), timeout=5).strategies)


@pytest.fixture
def tls_plane(tmp_path: Path, pki: dict[str, Path]) -> Iterator[PlaneThread]:
    plane = PlaneThread(tmp_path / "florist", tls=TLSConfig(pki["server.crt"], pki["server.key"]))
    yield plane
    plane.stop()


def test_tls_clients_that_trust_the_ca_are_served_and_plaintext_is_refused(
    tls_plane: PlaneThread, pki: dict[str, Path]
) -> None:
    credentials = grpc.ssl_channel_credentials(pki["ca.crt"].read_bytes())
    with grpc.secure_channel(f"localhost:{tls_plane.plane.port}", credentials) as channel:
        assert catalog(channel) > 0
    with grpc.insecure_channel(f"localhost:{tls_plane.plane.port}") as channel, pytest.raises(grpc.RpcError):
        catalog(channel)


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    plane = PlaneThread(
        tmp_path / "florist", tls=TLSConfig(pki["server.crt"], pki["server.key"], client_ca_file=pki["ca.crt"])
    )
    try:
        address = f"localhost:{plane.plane.port}"
        anonymous = grpc.ssl_channel_credentials(pki["ca.crt"].read_bytes())
        with grpc.secure_channel(address, anonymous) as channel, pytest.raises(grpc.RpcError):
            catalog(channel)
        identified = grpc.ssl_channel_credentials(
            pki["ca.crt"].read_bytes(), pki["client.key"].read_bytes(), pki["client.crt"].read_bytes()
        )
        with grpc.secure_channel(address, identified) as channel:
            assert catalog(channel) > 0
    finally:
        plane.stop()
