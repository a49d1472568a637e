"""Get the relay's certificates from the portal's CA (the demo, labs, private deployments).

The relay makes its own P-256 key, sends a CSR to ``POST {portal}/api/v1/relay/certificate``
with its relay credentials, and writes what ``ewsgate relay`` reads by default in its data
directory (see docs/relay.md, *Configuration*)::

    tunnel-key.pem, tunnel-cert.pem     the agent-facing tunnel listener
    browser-key.pem, browser-cert.pem   the browser-facing HTTPS (*.DOMAIN) — same key and cert
    ca.pem                              the portal CA: agents' client certificates chain to it

The portal decides the names (the relay's registered domain, ``*.domain`` and its tunnel
address); the private key never leaves this machine. Keys are written with mode 0600. In
production the browser certificate would rather come from a public CA (browsers must trust it);
then only the tunnel files and ``ca.pem`` are needed from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CERTIFICATE_PATH", "RelayCertificates", "fetch_relay_certificates"]

CERTIFICATE_PATH = "/api/v1/relay/certificate"


@dataclass(frozen=True)
class RelayCertificates:
    """What was written, and the names the portal put in the certificate."""

    files: dict[str, Path]
    dns_names: list[str]
    ip_addresses: list[str]
    not_after: str


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_all(data_dir: Path, files: dict[str, tuple[bytes, int]]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, (data, mode) in files.items():
        _write(data_dir / name, data, mode)


async def fetch_relay_certificates(portal_url: str, relay_id: str, relay_secret: str,
                                   data_dir: Path, *, http: httpx.AsyncClient | None = None,
                                   verify: Any = True) -> RelayCertificates:
    """Ask the portal's CA for the relay's certificate and write the files into ``data_dir``.

    Raises :class:`httpx.HTTPStatusError` (401: wrong relay credentials) or
    :class:`httpx.HTTPError` when the portal cannot be reached.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                       f"ewsgate relay {relay_id}")]))
           .sign(key, hashes.SHA256()))
    body = {"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode("ascii")}
    url = portal_url.rstrip("/") + CERTIFICATE_PATH
    owned = http is None
    client = http or httpx.AsyncClient(verify=verify, timeout=30.0)
    try:
        response = await client.post(url, json=body, auth=(relay_id, relay_secret))
        response.raise_for_status()
        answer = response.json()
    finally:
        if owned:
            await client.aclose()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = answer["certificate_pem"].encode("ascii")
    files = {
        "tunnel-key.pem": (key_pem, 0o600), "tunnel-cert.pem": (cert_pem, 0o644),
        "browser-key.pem": (key_pem, 0o600), "browser-cert.pem": (cert_pem, 0o644),
        "ca.pem": (answer["ca_certificate_pem"].encode("ascii"), 0o644),
    }
    _write_all(data_dir, files)  # a few small files, once at start-up
    return RelayCertificates(files={name: data_dir / name for name in files},
                             dns_names=list(answer["dns_names"]),
                             ip_addresses=list(answer["ip_addresses"]),
                             not_after=str(answer["not_after"]))
