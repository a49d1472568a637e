"""TLS contexts for the three kinds of connection ewsgate makes, built in one place.

* :func:`relay_tunnel_context` -- the relay's agent-facing listener: TLS 1.3 only, a client
  certificate from the portal's CA is required.
* :func:`agent_tunnel_context` -- the agent dialing the relay: TLS 1.3 only, presents the
  installation certificate, verifies the relay's certificate and host name.
* :func:`device_context` -- the agent dialing an HTTPS printer: printers ship self-signed
  certificates and TLS 1.0/1.1 with old ciphers, so nothing is verified here and the OpenSSL
  security level is 0. Identity is pinned instead: the SHA-256 fingerprint of the device's
  certificate is recorded on first contact and must not change during the session.

The two tunnel contexts wrap their connections in :class:`_DirectSSLObject`: the event loop's
TLS layer calls ``read``/``write``/``pending`` once per TLS record (16 KiB), and the stock
:class:`ssl.SSLObject` adds a Python frame to each of those calls.

:func:`peer_installation_id` reads the installation id back from a verified client certificate.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any, cast

__all__ = [
    "agent_tunnel_context",
    "device_context",
    "peer_certificate_sha256",
    "peer_installation_id",
    "relay_tunnel_context",
]


class _DirectSSLObject(ssl.SSLObject):
    """An :class:`ssl.SSLObject` whose ``read``, ``write`` and ``pending`` are the C methods.

    ``SSLObject.read`` and friends are Python wrappers that only forward to the C object; the
    event loop's TLS layer calls them for every 16 KiB record, so a bulk transfer pays three
    Python frames per record. Binding the C methods on the instance skips those frames; the
    arguments, results and exceptions are the C object's, exactly as the wrappers pass them on.
    Installed through the documented :attr:`ssl.SSLContext.sslobject_class` hook.
    """

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> _DirectSSLObject:
        self = cast(_DirectSSLObject, super()._create(*args, **kwargs))  # type: ignore[misc]
        raw = self._sslobj  # type: ignore[attr-defined]
        self.read = raw.read  # type: ignore[method-assign]
        self.write = raw.write  # type: ignore[method-assign]
        self.pending = raw.pending  # type: ignore[method-assign]
        return self


def _direct(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.sslobject_class = _DirectSSLObject
    return ctx


def relay_tunnel_context(cert_file: Path, key_file: Path, client_ca_file: Path) -> ssl.SSLContext:
    """Server side of the tunnel: TLS 1.3, client certificate issued by ``client_ca_file``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=str(client_ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return _direct(ctx)


def agent_tunnel_context(cert_file: Path, key_file: Path,
                         relay_ca_file: Path | None = None) -> ssl.SSLContext:
    """Client side of the tunnel: TLS 1.3, our installation certificate, verified relay."""
    ctx = ssl.create_default_context(cafile=str(relay_ca_file) if relay_ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert_file, key_file)
    return _direct(ctx)


def device_context() -> ssl.SSLContext:
    """For printers: any certificate, TLS 1.0 and up, legacy ciphers (``@SECLEVEL=0``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0)
    return ctx


def _peer_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)


def peer_installation_id(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The ``urn:ewsgate:installation:<id>`` of the verified client certificate, if any."""
    der = _peer_der(ssl_object)
    if not der:
        return None
    # imported here: the agent never needs X.509 parsing, and it costs megabytes of RSS
    from cryptography import x509

    from ewsgate.pki import installation_id_from_cert

    return installation_id_from_cert(x509.load_der_x509_certificate(der))


def peer_certificate_sha256(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """Hex SHA-256 of the peer's certificate (DER), as shown by browsers and openssl."""
    der = _peer_der(ssl_object)
    return hashlib.sha256(der).hexdigest() if der else None
