"""Certificates for relay nodes, signed by the portal's CA from the relay's own CSR.

A relay asks for one certificate (``POST /api/v1/relay/certificate``) for its agent-facing
tunnel listener and, where no public CA is used (the demo, a lab), its browser-facing HTTPS:
the relay generates its key and sends a CSR; its private key never leaves it.

Like the CA does for installations, the portal **ignores every name the CSR asks for** and
writes its own from the relay's registration (``ewsgate admin create-relay``): ``<domain>`` and
``*.<domain>`` (the session hosts ``s-<id>.<domain>``) and the host of its tunnel address (a DNS
name or an IP address). A relay holding valid credentials can therefore get a certificate for
its own names only. The CSR's signature is checked (proof of possession of the key), and only
P-256/P-384 EC or RSA ≥ 2048 keys are accepted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ewsgate.config import parse_host_port
from ewsgate.pki import SERVER_CERT_LIFETIME, CertificateAuthority, cert_to_pem
from ewsgate.portal.store.models import Relay

__all__ = ["RelayCertError", "SignedRelayCert", "relay_names", "sign_relay_csr"]

MAX_CSR_BYTES = 16 * 1024


class RelayCertError(ValueError):
    """The CSR cannot be signed; ``code`` is stable, the message says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedRelayCert:
    """The certificate (PEM), the CA certificate (PEM), the names in it and its expiry."""

    certificate_pem: bytes
    ca_certificate_pem: bytes
    dns_names: list[str]
    ip_addresses: list[str]
    not_after: dt.datetime


def relay_names(relay: Relay) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a relay's certificate carries."""
    dns = [relay.public_domain, f"*.{relay.public_domain}"]
    ips: list[str] = []
    if relay.tunnel_address:
        host = parse_host_port(relay.tunnel_address).host
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            if host not in dns:
                dns.append(host)
    return dns, ips


def _check_key(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise RelayCertError("relay_cert.bad_key", f"EC curve {key.curve.name} is not "
                                 "accepted; use P-256 or P-384")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise RelayCertError("relay_cert.bad_key", "RSA keys must be at least 2048 bits")
        return
    raise RelayCertError("relay_cert.bad_key", "only EC (P-256, P-384) and RSA keys are accepted")


def sign_relay_csr(ca: CertificateAuthority, csr_pem: bytes, relay: Relay, *,
                   now: dt.datetime) -> SignedRelayCert:
    """Sign ``csr_pem`` for ``relay`` with the names of its registration."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise RelayCertError("relay_cert.too_large", "the CSR is larger than 16 KiB")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise RelayCertError("relay_cert.bad_csr", f"the CSR is not a PEM certificate "
                             f"signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise RelayCertError("relay_cert.bad_signature", "the CSR's signature does not verify")
    public_key = csr.public_key()
    _check_key(public_key)
    dns, ips = relay_names(relay)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    not_after = min(now + SERVER_CERT_LIFETIME, ca.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, relay.public_domain),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                    f"ewsgate relay {relay.id}")]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            content_commitment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return SignedRelayCert(cert_to_pem(cert), ca.cert_pem, dns, ips, not_after)
