"""The agent host's ARP / neighbour table: the MAC behind an IP when SNMP does not answer.

Theory of operation. A host on the agent's own layer-2 segment appears in the kernel's
neighbour table once a packet has been sent to it. The table is read from ``/proc/net/arp``
(IPv4) and from ``ip neigh show <ip>`` (IPv4 and IPv6); both parsers are pure functions.
Only complete entries count: an ARP row with flags 0x0 or an all-zero MAC, or an ``ip neigh``
row in state INCOMPLETE or FAILED (or without ``lladdr``), is no entry at all.

Priming: when the IP has no entry yet, one TCP connect to the device's web port makes the
kernel resolve it (the SNMP requests that went unanswered have usually done so already).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ewsgate.agent.snmp.values import MacError, normalize_mac

__all__ = [
    "NeighbourTable",
    "StaticNeighbourTable",
    "SystemNeighbourTable",
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


@dataclass(frozen=True, slots=True)
class SystemNeighbourTable:
    """The host's table: ``proc_path`` for IPv4 first, then ``ip_command`` + ``show <ip>``.

    Either source can be switched off with ``None`` (or pointed at a file in tests).
    """

    proc_path: Path | None = Path("/proc/net/arp")
    ip_command: Sequence[str] | None = ("ip", "neigh", "show")
    command_timeout: float = 2.0

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
        if self.ip_command is None:
            return None
        return parse_ip_neigh(await self._run_ip(str(address))).get(str(address))

    async def _run_ip(self, ip: str) -> str:
        if self.ip_command is None:
            return ""
        try:
            process = await asyncio.create_subprocess_exec(
                *self.ip_command, ip, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return ""
        try:
            async with asyncio.timeout(self.command_timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ""
        return out.decode("utf-8", "replace")


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
