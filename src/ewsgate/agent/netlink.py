"""rtnetlink, read-only: this host's addresses and neighbour table, without forking a process.

Why not ``ip addr`` / ``ip neigh``: the agent runs gRPC, whose threads do not survive a
``fork()`` beside them (a forked child crashed during the security tests). A netlink socket is
one ``socket()``, one request and a few ``recv()`` calls, in this process.

Theory of operation. A dump request is a ``nlmsghdr`` (``NLM_F_REQUEST | NLM_F_DUMP``) followed
by the family's header (``ifaddrmsg`` for ``RTM_GETADDR``, ``ndmsg`` for ``RTM_GETNEIGH``); the
kernel answers with a run of ``RTM_NEWADDR`` / ``RTM_NEWNEIGH`` messages, each a fixed header
and a list of ``rtattr`` (type, length, value, padded to 4 bytes), ended by ``NLMSG_DONE``.
The encoders and parsers here are pure functions over bytes (tested without a socket); only
:func:`dump` touches the kernel. Layouts are from ``linux/netlink.h``, ``linux/rtnetlink.h``,
``linux/if_addr.h`` and ``linux/neighbour.h``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "NUD_VALID",
    "AddressRecord",
    "NeighbourRecord",
    "NetlinkError",
    "dump",
    "encode_dump_request",
    "parse_address",
    "parse_messages",
    "parse_neighbour",
    "read_addresses",
    "read_neighbours",
]

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
NDA_DST = 1
NDA_LLADDR = 2

NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
#: states whose link-layer address is one the kernel has seen or was given
NUD_VALID = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BBHiHBB")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused or garbled a dump; the message says which request and why."""


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """One ``RTM_NEWADDR``: an address of an interface (and its IPv4 broadcast address)."""

    index: int
    prefixlen: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    local: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    broadcast: ipaddress.IPv4Address | None


@dataclass(frozen=True, slots=True)
class NeighbourRecord:
    """One ``RTM_NEWNEIGH``: an IP, the link-layer address the kernel has for it, its state."""

    index: int
    state: int
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    lladdr: bytes | None

    @property
    def valid(self) -> bool:
        return bool(self.state & NUD_VALID) and bool(self.lladdr) and any(self.lladdr or b"")


def _align(length: int) -> int:
    return (length + 3) & ~3


def encode_dump_request(msg_type: int, family: int, seq: int) -> bytes:
    """A ``RTM_GETADDR`` or ``RTM_GETNEIGH`` dump request for ``family`` (AF_INET/AF_INET6)."""
    if msg_type == RTM_GETADDR:
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    elif msg_type == RTM_GETNEIGH:
        body = _NDMSG.pack(family, 0, 0, 0, 0, 0, 0)
    else:
        raise ValueError(f"netlink: no dump request for message type {msg_type}")
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP,
                          seq, 0) + body


def parse_messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Split one ``recv()`` into ``(type, flags, payload)``; a truncated tail is an error."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError(f"netlink: message of length {length} at offset {offset} "
                               f"overruns the {len(data)}-byte datagram")
        yield msg_type, flags, data[offset + _NLMSGHDR.size: offset + length]
        offset += _align(length)


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    attributes: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break
        attributes.setdefault(kind, data[offset + _RTATTR.size: offset + length])
        offset += _align(length)
    return attributes


def _ip(family: int, raw: bytes | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if raw is None:
        return None
    if family == socket.AF_INET and len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if family == socket.AF_INET6 and len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    return None


def parse_address(payload: bytes) -> AddressRecord | None:
    """An ``RTM_NEWADDR`` payload → record; ``None`` for a family other than IPv4/IPv6."""
    if len(payload) < _IFADDRMSG.size:
        raise NetlinkError(f"netlink: RTM_NEWADDR of {len(payload)} bytes is too short")
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = _attributes(payload, _IFADDRMSG.size)
    broadcast = _ip(family, attrs.get(IFA_BROADCAST))
    return AddressRecord(index=index, prefixlen=prefixlen,
                         address=_ip(family, attrs.get(IFA_ADDRESS)),
                         local=_ip(family, attrs.get(IFA_LOCAL)),
                         broadcast=broadcast if isinstance(broadcast, ipaddress.IPv4Address)
                         else None)


def parse_neighbour(payload: bytes) -> NeighbourRecord | None:
    """An ``RTM_NEWNEIGH`` payload → record; ``None`` for a family other than IPv4/IPv6."""
    if len(payload) < _NDMSG.size:
        raise NetlinkError(f"netlink: RTM_NEWNEIGH of {len(payload)} bytes is too short")
    family, _pad1, _pad2, index, state, _flags, _kind = _NDMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = _attributes(payload, _NDMSG.size)
    return NeighbourRecord(index=index, state=state,
                           destination=_ip(family, attrs.get(NDA_DST)),
                           lladdr=attrs.get(NDA_LLADDR))


def dump(msg_type: int, family: int, *, timeout: float = 1.0) -> list[bytes]:
    """Send one dump request and return the payloads of its answers (blocking, bounded).

    Raises :class:`NetlinkError` (an ``OSError``) when netlink is unavailable (not Linux),
    the kernel answers with an error, or the answer does not end within ``timeout``.
    """
    if not hasattr(socket, "AF_NETLINK"):
        raise NetlinkError("netlink: not available on this platform")
    answer_type = RTM_NEWADDR if msg_type == RTM_GETADDR else RTM_NEWNEIGH
    seq = int.from_bytes(os.urandom(4), "little") or 1
    payloads: list[bytes] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(encode_dump_request(msg_type, family, seq))
        for _ in range(100_000):  # a bound: a host has far fewer than this many datagrams
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise NetlinkError(f"netlink: no end of the dump within {timeout} s") from None
            for kind, _flags, payload in parse_messages(data):
                if kind == NLMSG_DONE:
                    return payloads
                if kind == NLMSG_ERROR:
                    (error,) = _NLMSGERR.unpack_from(payload) if len(payload) >= 4 else (0,)
                    if error == 0:
                        continue
                    raise NetlinkError(-error, f"netlink: the kernel refused the dump "
                                               f"({os.strerror(-error)})")
                if kind == answer_type:
                    payloads.append(payload)
    raise NetlinkError("netlink: the dump did not end")


def read_addresses(*, timeout: float = 1.0) -> list[AddressRecord]:
    """Every IPv4 and IPv6 address of every interface of this host (network namespace)."""
    records: list[AddressRecord] = []
    # AF_UNSPEC: one dump answers for every family
    for payload in dump(RTM_GETADDR, socket.AF_UNSPEC, timeout=timeout):
        record = parse_address(payload)
        if record is not None:
            records.append(record)
    return records


def read_neighbours(family: int, *, timeout: float = 1.0) -> list[NeighbourRecord]:
    """The kernel's neighbour table (ARP for AF_INET, NDP for AF_INET6)."""
    records: list[NeighbourRecord] = []
    for payload in dump(RTM_GETNEIGH, family, timeout=timeout):
        record = parse_neighbour(payload)
        if record is not None:
            records.append(record)
    return records
