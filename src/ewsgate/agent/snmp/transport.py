"""SNMP over UDP that hears only the device it asked: one connected socket per target.

Why. pysnmp's client transport is one unconnected UDP socket per engine: it accepts a
datagram from *any* source and matches a response to its request by the request id alone.
A host on the customer's LAN that sees (or guesses) a request can then answer for the device
from its own address -- with the recorded serial -- and be taken for the device.

How. Each target ``(ip, port)`` gets its own pysnmp transport domain (a private OID under
pysnmp's UDP domain) and its own asyncio datagram endpoint *connected* to that address and
port. The kernel delivers to a connected UDP socket only datagrams whose source is the peer
it is connected to; :meth:`PeerTransport.datagram_received` checks ``addr`` once more, counts
and drops anything else (defence in depth, e.g. for a platform that does not filter). A
response from another address or another port never reaches pysnmp's message processing,
so for the check it is as if nothing had answered.

Bounded: at most ``max_peers`` connected sockets are kept (least recently used ones are
closed); a domain number is kept per target for the process's life so pysnmp's target
entries are reused, as before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import OrderedDict
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp, udp6

__all__ = ["PeerTransport", "PeerTransports", "same_peer"]

log = logging.getLogger(__name__)

#: private sub-domains of the UDP and UDP6 domains; pysnmp uses them as dictionary keys and
#: picks the address syntax by their prefix
_DOMAIN_BASE = {4: (*udp.DOMAIN_NAME, 9911), 6: (*udp6.DOMAIN_NAME, 9911)}


def same_peer(addr: Any, ip: str, port: int) -> bool:
    """Whether a datagram's source ``addr`` (as asyncio reports it) is ``ip:port``."""
    try:
        host, source_port = str(addr[0]).split("%")[0], int(addr[1])
        return ipaddress.ip_address(host) == ipaddress.ip_address(ip) and source_port == port
    except (TypeError, ValueError, IndexError):
        return False


class _PeerMixin:
    """Connected-socket behaviour shared by the IPv4 and IPv6 transports."""

    peer: tuple[str, int]
    dropped: int
    transport: asyncio.DatagramTransport | None

    def datagram_received(self, datagram: bytes, addr: Any) -> None:
        if not same_peer(addr, *self.peer):
            self.dropped += 1
            log.warning("dropped an SNMP datagram from %s: requests went to %s:%d",
                        addr, *self.peer)
            return
        super().datagram_received(datagram, addr)  # type: ignore[misc]

    def send_message(self, outgoing: bytes, address: Any) -> None:
        if not same_peer(address, *self.peer) or self.transport is None:
            log.warning("SNMP request to %s not sent: this socket serves only %s:%d",
                        address, *self.peer)
            return
        self.transport.sendto(outgoing)


class _Udp4Peer(_PeerMixin, udp.UdpAsyncioTransport):  # type: ignore[misc]
    pass


class _Udp6Peer(_PeerMixin, udp6.Udp6AsyncioTransport):  # type: ignore[misc]
    pass


PeerTransport = _Udp4Peer | _Udp6Peer


class PeerTransports:
    """The connected transports of one pysnmp engine, one per target ``(ip, port)``."""

    def __init__(self, max_peers: int = 128) -> None:
        self.max_peers = max_peers
        self._domains: dict[tuple[str, int], tuple[int, ...]] = {}
        self._open: OrderedDict[tuple[str, int], PeerTransport] = OrderedDict()
        #: one opener at a time per target: concurrent checks of one device (several sessions
        #: resumed at once) must share one socket, not register its domain twice
        self._opening: dict[tuple[str, int], asyncio.Lock] = {}

    def domain(self, ip: str, port: int) -> tuple[int, ...]:
        """The transport domain of ``ip:port`` (stable for the process's life)."""
        key = (str(ipaddress.ip_address(ip)), port)
        found = self._domains.get(key)
        if found is None:
            version = ipaddress.ip_address(key[0]).version
            found = self._domains[key] = (*_DOMAIN_BASE[version], len(self._domains) + 1)
        return found

    def get(self, ip: str, port: int) -> PeerTransport | None:
        return self._open.get((str(ipaddress.ip_address(ip)), port))

    async def ensure(self, engine: Any, ip: str, port: int) -> tuple[int, ...]:
        """Open (or reuse) the connected socket for ``ip:port`` on ``engine``; its domain."""
        key = (str(ipaddress.ip_address(ip)), port)
        async with self._opening.setdefault(key, asyncio.Lock()):
            return await self._ensure(engine, key)

    async def _ensure(self, engine: Any, key: tuple[str, int]) -> tuple[int, ...]:
        from pysnmp.entity import config

        domain = self.domain(*key)
        existing = self._open.get(key)
        if existing is not None and existing.transport is not None \
                and not existing.transport.is_closing():
            self._open.move_to_end(key)
            return domain
        if existing is not None:
            self._forget(engine, key)
        transport: PeerTransport = _Udp6Peer() if ":" in key[0] else _Udp4Peer()
        transport.peer, transport.dropped = key, 0
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in key[0] else socket.AF_INET
        await loop.create_datagram_endpoint(lambda: transport, remote_addr=key, family=family)
        config.add_transport(engine, domain, transport)
        self._open[key] = transport
        while len(self._open) > self.max_peers:
            self._forget(engine, next(iter(self._open)))
        return domain

    def _forget(self, engine: Any, key: tuple[str, int]) -> None:
        transport = self._open.pop(key)
        dispatcher = engine.transport_dispatcher
        if dispatcher is not None:
            try:
                dispatcher.unregister_transport(self._domains[key])
            except Exception:  # already gone: nothing to undo
                log.debug("transport for %s:%d was not registered", *key)
        transport.close_transport()

    def close(self, engine: Any) -> None:
        """Close every socket (the engine is being closed)."""
        for key in list(self._open):
            self._forget(engine, key)
