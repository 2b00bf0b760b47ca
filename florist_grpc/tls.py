"""TLS files: the control plane's certificate and key (and the CA of its clients' certificates), checked the way a
server will use them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


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
