"""This host's own IP addresses, for the address policy's "never the agent's own host" rule.

Read over rtnetlink (:mod:`ewsgate.agent.netlink`): one ``RTM_GETADDR`` dump per family, in
this process (no ``ip addr`` fork beside gRPC's threads; psutil is a test-only dependency here,
and netlink gives the IPv4 broadcast addresses too). For each address the kernel reports both
``IFA_LOCAL`` (the interface's own address) and ``IFA_ADDRESS`` (on a point-to-point link, the
peer's); both count as "this host", since neither is a device on the site's LAN.

Where netlink is not available (an agent on a non-Linux host), the addresses the host name
resolves to are used, which can miss an interface; docs/identity.md says so. When neither can
be read, :class:`~ewsgate.agent.address_policy.HostAddresses` carries ``unavailable`` and the
policy refuses every address (fail closed).
"""

from __future__ import annotations

import ipaddress
import socket

from ewsgate.agent.address_policy import HostAddresses, IPAddress
from ewsgate.agent.netlink import AddressRecord, NetlinkError, read_addresses

__all__ = ["from_records", "read_host_addresses"]


def from_records(records: list[AddressRecord]) -> HostAddresses:
    """Netlink address records → :class:`HostAddresses` (pure)."""
    addresses: set[IPAddress] = set()
    broadcasts: set[IPAddress] = set()
    for record in records:
        for ip in (record.local, record.address):
            if ip is not None:
                addresses.add(ip)
        if record.broadcast is not None:
            broadcasts.add(record.broadcast)
        if isinstance(record.local, ipaddress.IPv4Address) and record.prefixlen <= 30:
            # the network address of the host's own subnet (the old all-zeros broadcast)
            mask = (0xFFFFFFFF << (32 - record.prefixlen)) & 0xFFFFFFFF
            broadcasts.add(ipaddress.IPv4Address(int(record.local) & mask))
    return HostAddresses(addresses=frozenset(addresses), broadcasts=frozenset(broadcasts))


def _from_host_name() -> HostAddresses:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError as exc:
        return HostAddresses(unavailable=f"netlink is not available and the host name does "
                                         f"not resolve: {exc}")
    addresses: set[IPAddress] = set()
    for _family, _type, _proto, _name, sockaddr in infos:
        try:
            addresses.add(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
        except ValueError:
            continue
    return HostAddresses(addresses=frozenset(addresses))


def read_host_addresses() -> HostAddresses:
    """This host's (network namespace's) addresses, now."""
    if not hasattr(socket, "AF_NETLINK"):
        return _from_host_name()
    try:
        return from_records(read_addresses())
    except (NetlinkError, OSError) as exc:
        return HostAddresses(unavailable=f"rtnetlink: {exc}")
