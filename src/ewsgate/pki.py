"""The certificate authority and X.509 helpers shared by the portal, the agent, the relay and tests.

Theory of operation
-------------------
ewsgate runs one private CA per portal. Its key lives in the portal's data directory
(``ca.key``, mode 0600) beside ``ca.crt``, or is loaded from configured paths. The CA issues:

* **server certificates** (``issue_server_cert``) for the gRPC control server and the relay's
  tunnel listener: SANs are DNS names and IP addresses, EKU ``serverAuth``;
* **installation client certificates** (``sign_installation_csr``) from a CSR the agent built
  locally, so the agent's private key never leaves the agent. The CA ignores whatever subject
  and extensions the CSR asks for and writes its own: the installation id in the common name and
  in a URI SAN ``urn:ewsgate:installation:<id>``, EKU ``clientAuth``. Whoever verifies the
  certificate chain reads the identity back with :func:`installation_id_from_cert`.

Everything here is pure computation on keys and certificates, except the three functions that
read or write files (:func:`load_ca`, :func:`load_or_create_ca`, :func:`write_private_key`).
Time is always passed in (``now``); nothing reads a global clock, so expiry is testable.

Keys are ECDSA P-256: small, quick to generate and quick to handshake (the control server holds
thousands of TLS connections). RSA (2048 bits or more) and other EC curves are accepted in CSRs.

Typical use::

    ca = load_or_create_ca(data_dir / "ca.crt", data_dir / "ca.key", now=now)
    server = ca.issue_server_cert(dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=now)
    key = generate_key(); csr = build_csr(key, "installation")          # on the agent
    cert = ca.sign_installation_csr(csr, installation_id="42", now=now)  # on the portal
    assert installation_id_from_cert(cert) == "42"
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_LIFETIME",
    "CLIENT_CERT_LIFETIME",
    "INSTALLATION_URI_PREFIX",
    "PORTAL_SERVER_NAME",
    "SERVER_CERT_LIFETIME",
    "CertificateAuthority",
    "IssuedCert",
    "PkiError",
    "PrivateKey",
    "build_csr",
    "ca_pin",
    "cert_from_pem",
    "cert_to_pem",
    "compose_enrolment_token",
    "create_ca",
    "fingerprint_sha256",
    "generate_key",
    "installation_id_from_cert",
    "installation_uri",
    "is_issued_by",
    "key_from_pem",
    "key_to_pem",
    "load_ca",
    "load_or_create_ca",
    "serial_hex",
    "split_enrolment_token",
    "write_private_key",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: the DNS name in every portal control-server certificate; agents verify this name (they pin
#: the portal's own CA, so the name only has to tell the portal apart from the CA's other servers)
PORTAL_SERVER_NAME = "ewsgate-portal"
#: ``urn:ewsgate:installation:<id>`` is the URI SAN that names an installation.
INSTALLATION_URI_PREFIX = "urn:ewsgate:installation:"
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_CERT_LIFETIME = dt.timedelta(days=365)
#: installation certificates live 30 days; agents renew at two thirds of that.
CLIENT_CERT_LIFETIME = dt.timedelta(days=30)
#: certificates start a little in the past so a peer whose clock lags still accepts them.
_BACKDATE = dt.timedelta(minutes=5)
_MIN_RSA_BITS = 2048


class PkiError(ValueError):
    """A key, CSR or certificate is unusable. ``code`` is stable; the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A freshly issued certificate with the private key made for it (server and test certs)."""

    key: PrivateKey
    cert: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        return key_to_pem(self.key)

    @property
    def cert_pem(self) -> bytes:
        return cert_to_pem(self.cert)


# ---------------------------------------------------------------------------- keys and PEM

def generate_key() -> PrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (protect it with file permissions: :func:`write_private_key`)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_from_pem(data: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key (EC or RSA)."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError("pki.bad_key", f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError("pki.bad_key", "only EC and RSA private keys are supported")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(data: bytes) -> x509.Certificate:
    """The first certificate of a PEM blob."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError("pki.bad_certificate", f"not a PEM certificate: {exc}") from None


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write ``key`` as PEM to ``path`` with mode 0600, atomically (no moment of wider access)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key_to_pem(key))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex without separators (64 characters)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def ca_pin(ca_cert: x509.Certificate) -> str:
    """SHA-256 of a (CA) certificate's DER, base64url without padding: 43 characters.

    Enrolment tokens carry it so that an agent can pick the portal's CA out of the certificate
    chain the enrolment port presents before it trusts anything
    (see :func:`compose_enrolment_token`).
    """
    digest = hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def compose_enrolment_token(secret: str, ca_cert: x509.Certificate) -> str:
    """The enrolment token an administrator copies to the site: ``<secret>.<ca-pin>``.

    ``secret`` is the one-time token the portal stores hashed; the pin is public.
    """
    if "." in secret:
        raise PkiError("pki.bad_token", "an enrolment secret cannot contain '.'")
    return f"{secret}.{ca_pin(ca_cert)}"


def split_enrolment_token(token: str) -> tuple[str, str | None]:
    """``(secret, ca_pin)`` from ``<secret>.<ca-pin>``; the pin is None without a dot."""
    secret, dot, pin = token.strip().partition(".")
    return secret, (pin if dot else None)


def serial_hex(cert: x509.Certificate) -> str:
    """The serial number as lowercase hex: the form stored as an installation's ``cert_serial``."""
    return format(cert.serial_number, "x")


def installation_uri(installation_id: str | int) -> str:
    """The URI SAN naming an installation: ``urn:ewsgate:installation:<id>``."""
    text = str(installation_id)
    if not text or any(ch.isspace() or ch in "/?#" for ch in text):
        raise PkiError("pki.bad_installation_id",
                       f"installation id {text!r} is not usable in a URI")
    return INSTALLATION_URI_PREFIX + text


def installation_id_from_cert(cert: x509.Certificate) -> str | None:
    """The installation id from the certificate's ``urn:ewsgate:installation:`` URI SAN, if any.

    Only the SAN counts (the common name is informational). ``None`` when there is no such SAN or
    more than one (a certificate naming two installations names none).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = [uri[len(INSTALLATION_URI_PREFIX):]
           for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
           if uri.startswith(INSTALLATION_URI_PREFIX)]
    return ids[0] if len(ids) == 1 and ids[0] else None


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert`` (the signature only; no dates, no names)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build_csr(key: PrivateKey, common_name: str = "ewsgate installation") -> bytes:
    """A PEM certificate signing request for ``key``; the CA replaces the subject anyway."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def _check_public_key(public_key: object) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise PkiError("pki.weak_key", f"EC curve {public_key.curve.name} is not accepted; "
                           "use P-256, P-384 or P-521")
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            raise PkiError("pki.weak_key", f"RSA key of {public_key.key_size} bits is too short; "
                           f"use at least {_MIN_RSA_BITS}")
        return
    raise PkiError("pki.weak_key", "only EC (P-256/384/521) and RSA keys are accepted")


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ewsgate"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise PkiError("pki.naive_time", "pass a timezone-aware datetime (e.g. datetime.now(UTC))")
    return now


# ---------------------------------------------------------------------------- the CA

@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA key and its self-signed certificate. Issues server and installation certificates."""

    key: PrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return cert_to_pem(self.cert)

    def _builder(self, subject: x509.Name, public_key: object, now: dt.datetime,
                 lifetime: dt.timedelta, backdate: dt.timedelta = _BACKDATE,
                 ) -> x509.CertificateBuilder:
        now = _aware(now)
        not_after = min(now + lifetime, self.cert.not_valid_after_utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)  # type: ignore[arg-type]
        return (x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.cert.subject)
                .public_key(public_key)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - backdate)
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(ski, critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False))

    @staticmethod
    def _key_usage(public_key: object) -> x509.KeyUsage:
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        return x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa,
                             content_commitment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                             encipher_only=False, decipher_only=False)

    def issue_server_cert(
        self,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        now: dt.datetime,
        lifetime: dt.timedelta = SERVER_CERT_LIFETIME,
        common_name: str | None = None,
        key: PrivateKey | None = None,
    ) -> IssuedCert:
        """A TLS server certificate (EKU serverAuth) for these DNS names and IP addresses.

        A new P-256 key is generated unless ``key`` is given. At least one name or address is
        required; the common name defaults to the first of them.
        """
        dns = [name.strip() for name in dns_names if name.strip()]
        ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
        if not dns and not ips:
            raise PkiError("pki.no_names", "a server certificate needs at least one DNS name or IP")
        key = key or generate_key()
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        sans += [x509.IPAddress(ip) for ip in ips]
        cn = common_name or (dns[0] if dns else str(ips[0]))
        cert = (self._builder(_name(cn), key.public_key(), now, lifetime)
                .add_extension(self._key_usage(key.public_key()), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(self.key, hashes.SHA256()))
        return IssuedCert(key=key, cert=cert)

    def sign_installation_csr(
        self,
        csr_pem: bytes,
        *,
        installation_id: str | int,
        now: dt.datetime,
        lifetime: dt.timedelta = CLIENT_CERT_LIFETIME,
        backdate: dt.timedelta = _BACKDATE,
    ) -> x509.Certificate:
        """Sign an agent's CSR as the client certificate of ``installation_id`` (EKU clientAuth).

        The CSR must be well-formed, self-signed by its key, and use an accepted key; only its
        public key is used. The certificate's CN is ``installation <id>`` and its only SAN is the
        URI ``urn:ewsgate:installation:<id>``. It is valid from ``now - backdate`` (for peers
        whose clock lags) to ``now + lifetime``.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise PkiError("pki.bad_csr", f"the CSR is not valid PEM: {exc}") from None
        if not csr.is_signature_valid:
            raise PkiError("pki.bad_csr", "the CSR's signature does not match its public key")
        public_key = csr.public_key()
        _check_public_key(public_key)
        uri = installation_uri(installation_id)
        return (self._builder(_name(f"installation {installation_id}"), public_key, now, lifetime,
                              backdate)
                .add_extension(self._key_usage(public_key), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))

    def issue_installation_cert(
        self,
        installation_id: str | int,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta = CLIENT_CERT_LIFETIME,
    ) -> IssuedCert:
        """Key and client certificate in one step (tests, benchmarks, the demo's own agent)."""
        key = generate_key()
        cert = self.sign_installation_csr(build_csr(key), installation_id=installation_id,
                                          now=now, lifetime=lifetime)
        return IssuedCert(key=key, cert=cert)


def create_ca(common_name: str = "ewsgate portal CA", *, now: dt.datetime,
              lifetime: dt.timedelta = CA_LIFETIME) -> CertificateAuthority:
    """A new CA: P-256 key, self-signed certificate, path length 0 (it signs only leaves)."""
    now = _aware(now)
    key = generate_key()
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return CertificateAuthority(key=key, cert=cert)


def load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority:
    """Load a CA from PEM files; checks that the key matches and the certificate is a CA."""
    try:
        cert = cert_from_pem(cert_path.read_bytes())
        key = key_from_pem(key_path.read_bytes())
    except FileNotFoundError as exc:
        raise PkiError("pki.ca_missing", f"CA file {exc.filename} does not exist; "
                       "check the configured CA paths") from None
    if cert.public_key() != key.public_key():
        raise PkiError("pki.ca_key_mismatch",
                       f"the CA key {key_path} does not belong to the certificate {cert_path}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError("pki.not_a_ca", f"{cert_path} is not a CA certificate (basicConstraints)")
    return CertificateAuthority(key=key, cert=cert)


def load_or_create_ca(cert_path: Path, key_path: Path, *, now: dt.datetime,
                      common_name: str = "ewsgate portal CA") -> CertificateAuthority:
    """Load the CA from these files, or create it there on first start (key mode 0600).

    If only one of the two files exists the state is inconsistent and nothing is overwritten.
    """
    have_cert, have_key = cert_path.exists(), key_path.exists()
    if have_cert and have_key:
        return load_ca(cert_path, key_path)
    if have_cert or have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise PkiError("pki.ca_incomplete", f"{present} exists but {missing} does not; restore "
                       "the missing file or remove both to create a new CA")
    ca = create_ca(common_name, now=now)
    write_private_key(key_path, ca.key)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(ca.cert_pem)
    return ca
