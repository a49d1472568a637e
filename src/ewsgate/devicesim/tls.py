"""TLS for the simulated EWS: a self-signed certificate, and a modern or a *legacy* server context.

Printers ship a self-signed certificate made at first boot for their own IP; browsers warn, and
a proxy must be told to accept it. :func:`self_signed_certificate` makes one with
``cryptography`` (RSA 2048, SHA-256, CN and SAN = the advertised host, 10 years).

:func:`legacy_server_context` reproduces devices such as the Brother MFC-9340CDW that speak only
TLS 1.0/1.1 with CBC-SHA suites: ``minimum_version=TLSv1``, ``maximum_version=TLSv1_1`` and a
cipher string ending in ``@SECLEVEL=0`` (OpenSSL 3 refuses TLS < 1.2 at the default security
level, on both ends). A default Python client then fails with ``TLSV1_ALERT_PROTOCOL_VERSION``
and Chromium with ``ERR_SSL_VERSION_OR_CIPHER_MISMATCH``; only a client that lowers its own
floor the same way (:func:`legacy_client_context`, which is what the on-site agent must use)
connects.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "LEGACY_CIPHERS",
    "CertificatePair",
    "legacy_client_context",
    "legacy_server_context",
    "modern_server_context",
    "self_signed_certificate",
]

#: what an old embedded TLS stack offers: CBC with SHA-1 MACs, RSA key exchange, even 3DES
LEGACY_CIPHERS = ("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA:"
                  "DES-CBC3-SHA:@SECLEVEL=0")


@dataclass(frozen=True, slots=True)
class CertificatePair:
    """PEM certificate and private key."""

    cert_pem: bytes
    key_pem: bytes


def self_signed_certificate(host: str, *, organisation: str, model: str,
                            now: datetime.datetime | None = None) -> CertificatePair:
    """A device-style self-signed certificate for ``host`` (IP or name)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, host[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64]),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, model[:64]),
    ])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertificatePair(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )


def _load_chain(context: ssl.SSLContext, pair: CertificatePair) -> None:
    # ssl only loads from files; the key lives on disk for a moment in a private temp dir
    with tempfile.TemporaryDirectory(prefix="ewsgate-devicesim-") as folder:
        cert_path = Path(folder) / "cert.pem"
        key_path = Path(folder) / "key.pem"
        cert_path.write_bytes(pair.cert_pem)
        key_path.write_bytes(pair.key_pem)
        key_path.chmod(0o600)
        context.load_cert_chain(cert_path, key_path)


def modern_server_context(pair: CertificatePair) -> ssl.SSLContext:
    """TLS 1.2+ with OpenSSL's default suites (what a current HP/Epson EWS offers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, pair)
    return context


def legacy_server_context(pair: CertificatePair) -> ssl.SSLContext:
    """TLS 1.0/1.1 only, old CBC-SHA suites (a Brother-like device)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(LEGACY_CIPHERS)
    with warnings.catch_warnings():  # deprecated on purpose: this *is* the legacy device
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    _load_chain(context, pair)
    return context


def legacy_client_context() -> ssl.SSLContext:
    """A client that accepts a legacy device: TLS 1.0+, any cipher, no certificate checks.

    Only for talking to a device on the local network whose identity is checked by other
    means (SNMP serial and MAC); never for anything on the Internet.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    return context
