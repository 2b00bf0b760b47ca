"""The certificate and key files the TLS flags name (`serve --tls-cert/--tls-key/--tls-client-ca`, `agent
--tls-ca/--tls-cert/--tls-key`), the rules between those flags, and why a server could not use its files: said at
start-up, in the flags' own names, rather than left to gRPC; and the files as read again when they are renewed
(`read_tls`: checked together before they replace the ones in use)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None


def certificate_problem(tls: TLSConfig) -> str | None:
    """Why a server could not use these files (unreadable, not PEM, a key that is not the certificate's), or None.
    gRPC would only say that it could not listen on its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An empty password: an encrypted key is refused (as gRPC refuses it) instead of prompted for.
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: "")
    except (OSError, ssl.SSLError) as exc:
        return f"--tls-cert {tls.cert_file} and --tls-key {tls.key_file}: not a certificate and its key in PEM ({exc})"
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            return f"--tls-client-ca {tls.client_ca_file}: not a CA certificate in PEM ({exc})"
    return None


def serve_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TLSConfig | None:
    """serve's TLS flags as its TLSConfig (None without them); ValueError naming the flags when they do not fit."""
    if not (cert or key):
        if client_ca:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise ValueError("--tls-cert and --tls-key must be given together")
    tls = TLSConfig(cert, key, client_ca)
    if problem := certificate_problem(tls):
        raise ValueError(problem)
    return tls


def agent_tls_problem(ca: Path | None, cert: Path | None, key: Path | None) -> str | None:
    """What is wrong with the agent's TLS flags together, or None."""
    if bool(cert) != bool(key):
        return "--tls-cert and --tls-key must be given together"
    if cert and not ca:
        return "--tls-cert needs --tls-ca"
    return None


@dataclass(frozen=True)
class TlsMaterial:
    """The bytes of a certificate chain and its key (None for a party without one) and of a CA's certificates
    (None without), as read and checked together: what a renewed set of files must be before it is used."""

    cert_chain: bytes | None
    key: bytes | None
    ca: bytes | None


def read_tls(cert: Path | None, key: Path | None, ca: Path | None) -> TlsMaterial:
    """Read and check PEM files: a certificate chain whose first certificate is the key's, and CA certificates.
    Raises ValueError naming the file and what is wrong with it (a renewal caught half written, a key that is not
    the certificate's), or OSError when one cannot be read."""
    cert_bytes = cert.read_bytes() if cert is not None else None
    key_bytes = key.read_bytes() if key is not None else None
    ca_bytes = ca.read_bytes() if ca is not None else None
    if cert_bytes is not None and key_bytes is not None:
        try:
            leaf = x509.load_pem_x509_certificates(cert_bytes)[0]
        except ValueError as exc:
            raise ValueError(f"{cert}: not a certificate in PEM ({exc})") from None
        try:
            private = serialization.load_pem_private_key(key_bytes, password=None)
        except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
            raise ValueError(f"{key}: not an unencrypted private key in PEM ({exc})") from None
        if _public(leaf.public_key()) != _public(private.public_key()):
            raise ValueError(f"{key} is not the key of the certificate in {cert}")
    if ca_bytes is not None:
        try:
            x509.load_pem_x509_certificates(ca_bytes)
        except ValueError as exc:
            raise ValueError(f"{ca}: not a CA certificate in PEM ({exc})") from None
    return TlsMaterial(cert_bytes, key_bytes, ca_bytes)


def _public(key: Any) -> bytes:
    encoded: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return encoded
