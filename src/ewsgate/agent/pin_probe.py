"""Observing a device's second factors: its HTTPS certificate and its on-link MAC.

:func:`observe` runs after the SNMP/ARP check has verified the device and before anything is
dialled for a session. It makes at most one TLS handshake to the device's first HTTPS
endpoint (the same permissive context the dialer uses: printers have self-signed and old-TLS
certificates; we want the fingerprint, not a chain) and one neighbour-table lookup. It never
raises for what the network does: a failed handshake is an observation with ``cert_error``.
:func:`ewsgate.agent.pins.judge_pins` then decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ewsgate.agent.pins import Observation
from ewsgate.agent.snmp.neighbours import NeighbourTable
from ewsgate.aio.tls import device_context, peer_certificate_sha256

__all__ = ["observe", "read_certificate_sha256"]

async def read_certificate_sha256(ip: str, port: int, *, budget: float) -> str:
    """The SHA-256 of the certificate ``ip:port`` presents; raises ``OSError``/``TimeoutError``
    /``ssl.SSLError`` when no handshake completes within ``budget`` seconds."""
    async with asyncio.timeout(budget):
        _reader, writer = await asyncio.open_connection(ip, port, ssl=device_context(),
                                                        server_hostname=None)
    try:
        fingerprint = peer_certificate_sha256(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    if fingerprint is None:
        raise ssl.SSLError("the device presented no certificate")
    return fingerprint


async def observe(ip: str, *, tls_port: int | None, table: NeighbourTable,
                  budget: float) -> Observation:
    """What the device at ``ip`` shows now; ``tls_port`` is its HTTPS endpoint, if any."""
    fingerprint: str | None = None
    error: str | None = None
    if tls_port is not None:
        try:
            fingerprint = await read_certificate_sha256(ip, tls_port,
                                                        budget=max(0.1, budget))
        except TimeoutError:
            error = f"no TLS handshake on port {tls_port} within {budget:.1f} s"
        except ssl.SSLError as exc:
            error = f"TLS on port {tls_port} failed: {exc.reason or exc}"
        except OSError as exc:
            error = f"cannot connect to port {tls_port}: {exc.strerror or exc}"
    try:
        mac = await table.lookup(ip)
    except OSError:
        mac = None
    return Observation(ews_cert_sha256=fingerprint, tls_port=tls_port, cert_error=error,
                       on_link_mac=mac)
