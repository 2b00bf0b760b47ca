"""Throwaway certificates for tests of TLS and mutual TLS: a CA, a server certificate and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA's certificate, the server's certificate and key, the server's chain (its certificate
    then the CA's), and a client certificate and key (for mutual TLS)."""

    ca: Path
    cert: Path
    key: Path
    chain: Path
    client_cert: Path
    client_key: Path


def issue_pki(directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> Pki:
    """A new CA, and certificates it signs, valid for an hour: the server's for `hosts` (DNS names or IP
    addresses), and a client's. Written into `directory` (the CA's key too, as `ca-key.pem`, for `renew_server`)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    ca_pem = _certificate(ca_key, CA_NAME, ca_key, [])
    pki = Pki(*(directory / f"{name}.pem" for name in ("ca", "cert", "key", "chain", "client-cert", "client-key")))
    pki.ca.write_bytes(ca_pem)
    (directory / "ca-key.pem").write_bytes(_private_pem(ca_key))
    renew_server(pki, hosts)
    pki.client_cert.write_bytes(_certificate(ca_key, _name("florist test client"), client_key, []))
    pki.client_key.write_bytes(_private_pem(client_key))
    return pki


def renew_server(pki: Pki, hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> int:
    """A new key and certificate for the server, signed by the same CA, written over the old ones (as a renewal
    does); returns the new certificate's serial number."""
    loaded = serialization.load_pem_private_key(pki.ca.with_name("ca-key.pem").read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = _certificate(loaded, _name("florist test server"), server_key, [_general_name(h) for h in hosts])
    pki.key.write_bytes(_private_pem(server_key))
    pki.cert.write_bytes(cert_pem)
    pki.chain.write_bytes(cert_pem + pki.ca.read_bytes())
    return x509.load_pem_x509_certificate(cert_pem).serial_number


def _certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=subject == CA_NAME, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


CA_NAME = _name("florist test CA")
