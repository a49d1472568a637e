"""The agent host's ARP / neighbour table: the MAC behind an IP when SNMP does not answer.

Theory of operation. A host on the agent's own layer-2 segment appears in the kernel's
neighbour table once a packet has been sent to it. The table is read from ``/proc/net/arp``
(IPv4) and over rtnetlink (``RTM_GETNEIGH``, IPv4 and IPv6, :mod:`ewsgate.agent.netlink`),
never by forking ``ip neigh`` (a fork beside gRPC's threads crashed a child); the parsers are
pure functions. Only complete entries count: an ARP row with flags 0x0 or an all-zero MAC, a
netlink entry that is INCOMPLETE, FAILED or NOARP (or has no link-layer address), or an
``ip neigh`` row in state INCOMPLETE or FAILED, is no entry at all.

Priming: when the IP has no entry yet, one TCP connect to the device's web port makes the
kernel resolve it (the SNMP requests that went unanswered have usually done so already).
It goes to the device's recorded IP only, which the agent's address policy
(:mod:`ewsgate.agent.address_policy`) has already allowed before the identity check began --
so it never connects to the agent's own host, loopback or a metadata endpoint.

Limits, stated in docs/identity.md: across a router the table holds the router's MAC, so a
device behind a router mismatches (and fails closed); a STALE entry is the last MAC seen.

:class:`NeighbourTable` is what :func:`ewsgate.agent.identity.check_identity` takes as
``arp_table``; :class:`SystemNeighbourTable` reads the real host, :class:`StaticNeighbourTable`
serves a given mapping (tests, or a site that pins MACs).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ewsgate.agent.netlink import NeighbourRecord, read_neighbours
from ewsgate.agent.snmp.values import MacError, normalize_mac

__all__ = [
    "NeighbourTable",
    "StaticNeighbourTable",
    "SystemNeighbourTable",
    "from_netlink",
    "parse_ip_neigh",
    "parse_proc_net_arp",
    "prime_neighbour",
]

_BAD_STATES = {"INCOMPLETE", "FAILED", "NONE"}


class NeighbourTable(Protocol):
    """Where the MAC behind an IP is looked up when SNMP is silent or off."""

    async def lookup(self, ip: str) -> str | None:
        """The MAC (``aa:bb:cc:dd:ee:ff``) the host currently has for ``ip``, or ``None``."""
        ...


def parse_proc_net_arp(text: str) -> dict[str, str]:
    """``/proc/net/arp`` → ``{ip: mac}`` for complete entries only."""
    table: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        ip, _hw_type, flags, mac = fields[:4]
        try:
            complete = int(flags, 16) & 0x2
            normalized = normalize_mac(mac)
        except (ValueError, MacError):
            continue
        if complete and normalized != "00:00:00:00:00:00":
            table[ip] = normalized
    return table


def parse_ip_neigh(text: str) -> dict[str, str]:
    """``ip neigh show`` output → ``{ip: mac}``, skipping INCOMPLETE/FAILED rows."""
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or "lladdr" not in fields:
            continue
        if fields[-1].upper() in _BAD_STATES:
            continue
        position = fields.index("lladdr")
        if position + 1 >= len(fields):
            continue
        try:
            ip = str(ipaddress.ip_address(fields[0].split("%")[0]))
            table[ip] = normalize_mac(fields[position + 1])
        except (ValueError, MacError):
            continue
    return table


def from_netlink(records: list[NeighbourRecord]) -> dict[str, str]:
    """Netlink neighbour records → ``{ip: mac}`` for valid entries with a 6-byte address."""
    table: dict[str, str] = {}
    for record in records:
        if record.destination is None or not record.valid or record.lladdr is None or \
                len(record.lladdr) != 6:
            continue
        table[str(record.destination)] = ":".join(f"{byte:02x}" for byte in record.lladdr)
    return table


@dataclass(frozen=True, slots=True)
class StaticNeighbourTable:
    """A fixed ``{ip: mac}`` table; MACs are normalised when it is made."""

    entries: Mapping[str, str]

    def __post_init__(self) -> None:
        normalized = {str(ipaddress.ip_address(ip)): normalize_mac(mac)
                      for ip, mac in self.entries.items()}
        object.__setattr__(self, "entries", normalized)

    async def lookup(self, ip: str) -> str | None:
        return self.entries.get(str(ipaddress.ip_address(ip)))


NetlinkRead = Callable[[int], list[NeighbourRecord]]


@dataclass(frozen=True, slots=True)
class SystemNeighbourTable:
    """The host's table: ``proc_path`` for IPv4 first, then rtnetlink for IPv4 and IPv6.

    Either source can be switched off with ``None``, or pointed at a file / a reader in tests.
    Nothing here forks a process.
    """

    proc_path: Path | None = Path("/proc/net/arp")
    netlink: NetlinkRead | None = read_neighbours

    async def lookup(self, ip: str) -> str | None:
        address = ipaddress.ip_address(ip)
        if address.version == 4 and self.proc_path is not None:
            try:
                text = await asyncio.to_thread(self.proc_path.read_text)
            except OSError:
                text = ""
            found = parse_proc_net_arp(text).get(str(address))
            if found:
                return found
        if self.netlink is None:
            return None
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        try:
            records = await asyncio.to_thread(self.netlink, family)
        except OSError:
            return None
        return from_netlink(records).get(str(address))


async def prime_neighbour(ip: str, port: int, *, budget: float) -> None:
    """One TCP connect to ``ip:port`` so the kernel resolves the neighbour; the result of the
    connect does not matter (a refused connection has resolved the MAC too)."""
    try:
        async with asyncio.timeout(budget):
            _, writer = await asyncio.open_connection(ip, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return
