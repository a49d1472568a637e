"""TLS to the device: accept what printers have, but pin what we saw first.

Printers present self-signed certificates, expired ones, and TLS 1.0/1.1 with ciphers that
OpenSSL 3 refuses by default. The agent terminates that TLS itself
(:func:`ewsgate.aio.tls.device_context`: no chain check, ``@SECLEVEL=0``) so the browser only
ever sees the relay's modern TLS. In exchange the device certificate is *pinned per session*:
:class:`DeviceCertPin` records the SHA-256 fingerprint on the first connection, and a different
certificate later in the same session fails the session (someone else may answer at that IP).
"""

from __future__ import annotations

import logging
import ssl

from ewsgate.aio.errors import TunnelError
from ewsgate.aio.tls import device_context
from ewsgate.tunnel import ErrorCode

__all__ = ["DeviceCertChanged", "DeviceCertPin", "device_context"]

log = logging.getLogger(__name__)


class DeviceCertChanged(TunnelError):
    """The device's TLS certificate differs from the one recorded earlier in the session."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.DEVICE_CERT_CHANGED)


class DeviceCertPin:
    """The fingerprint first seen for one device in one session."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.fingerprint: str | None = None
        self._context: ssl.SSLContext | None = None

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = device_context()
        return self._context

    def check(self, fingerprint: str | None, port: int) -> None:
        """Record the first fingerprint; raise :class:`DeviceCertChanged` on any other."""
        if fingerprint is None:
            raise DeviceCertChanged(f"the device at {self.ip}:{port} presented no certificate")
        if self.fingerprint is None:
            self.fingerprint = fingerprint
            log.info("device %s:%d certificate SHA-256 %s recorded", self.ip, port, fingerprint)
            return
        if fingerprint != self.fingerprint:
            raise DeviceCertChanged(
                f"the device at {self.ip}:{port} now presents certificate SHA-256 "
                f"{fingerprint}, not {self.fingerprint} (pinned for this device, or seen earlier "
                "in this session); another host may be answering at this address. The session "
                "is ended; verify the device and start a new session")
