"""rtnetlink without a fork: the pure parsers over hand-built bytes, then the real kernel."""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.agent.host_addresses import from_records, read_host_addresses
from ewsgate.agent.netlink import (
    NLMSG_DONE,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NOARP,
    NUD_REACHABLE,
    NUD_STALE,
    RTM_GETADDR,
    RTM_GETNEIGH,
    RTM_NEWADDR,
    RTM_NEWNEIGH,
    NetlinkError,
    encode_dump_request,
    parse_address,
    parse_messages,
    parse_neighbour,
    read_addresses,
    read_neighbours,
)
from ewsgate.agent.snmp.neighbours import from_netlink

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rtnetlink is Linux")


def rtattr(kind: int, value: bytes) -> bytes:
    """One attribute as the kernel lays it out (linux/rtnetlink.h RTA_* macros), written here
    independently of the module under test."""
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * ((-length) % 4)


def message(kind: int, body: bytes, flags: int = 2) -> bytes:
    length = 16 + len(body)
    return struct.pack("=IHHII", length, kind, flags, 7, 0) + body + b"\0" * ((-length) % 4)


def newaddr(family: int, prefix: int, index: int, **attrs: bytes) -> bytes:
    numbers = {"address": 1, "local": 2, "label": 3, "broadcast": 4}
    return message(RTM_NEWADDR, struct.pack("=BBBBI", family, prefix, 0, 0, index) +
                   b"".join(rtattr(numbers[name], value) for name, value in attrs.items()))


def newneigh(family: int, state: int, dst: bytes, lladdr: bytes | None) -> bytes:
    body = struct.pack("=BBHiHBB", family, 0, 0, 3, state, 0, 1) + rtattr(1, dst)
    if lladdr is not None:
        body += rtattr(2, lladdr)
    return message(RTM_NEWNEIGH, body)


def test_a_dump_request_is_a_netlink_header_and_the_family_header() -> None:
    request = encode_dump_request(RTM_GETNEIGH, socket.AF_INET6, seq=42)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq, pid) == (len(request), RTM_GETNEIGH, 0x301, 42, 0)
    assert request[16] == socket.AF_INET6 and len(request) == 16 + 12
    assert len(encode_dump_request(RTM_GETADDR, socket.AF_INET, seq=1)) == 16 + 8
    with pytest.raises(ValueError, match="no dump request"):
        encode_dump_request(RTM_NEWADDR, socket.AF_INET, seq=1)


def test_address_messages_give_local_peer_and_broadcast() -> None:
    data = (newaddr(socket.AF_INET, 24, 2, address=bytes([10, 9, 0, 1]),
                    local=bytes([10, 9, 0, 1]), label=b"eth0\0",
                    broadcast=bytes([10, 9, 0, 255])) +
            newaddr(socket.AF_INET, 32, 5, address=bytes([10, 8, 0, 2]),
                    local=bytes([10, 8, 0, 1])) +
            newaddr(socket.AF_INET6, 64, 2,
                    address=ipaddress.IPv6Address("2001:db8:9::1").packed) +
            message(NLMSG_DONE, b"\0\0\0\0"))
    parsed = list(parse_messages(data))
    assert [kind for kind, _, _ in parsed] == [RTM_NEWADDR] * 3 + [NLMSG_DONE]
    records = [parse_address(payload) for kind, _, payload in parsed if kind == RTM_NEWADDR]
    assert records[0] is not None and records[0].broadcast == ipaddress.IPv4Address("10.9.0.255")
    host = from_records([record for record in records if record is not None])
    assert host.addresses == {ipaddress.ip_address(a) for a in
                              ("10.9.0.1", "10.8.0.1", "10.8.0.2", "2001:db8:9::1")}
    assert host.broadcasts == {ipaddress.IPv4Address("10.9.0.255"),
                               ipaddress.IPv4Address("10.9.0.0")}


def test_neighbour_messages_keep_only_entries_with_a_resolved_address() -> None:
    mac = bytes.fromhex("a0d3c14a2b3c")
    data = b"".join([
        newneigh(socket.AF_INET, NUD_REACHABLE, bytes([10, 9, 0, 5]), mac),
        newneigh(socket.AF_INET, NUD_STALE, bytes([10, 9, 0, 6]), mac),
        newneigh(socket.AF_INET, NUD_INCOMPLETE, bytes([10, 9, 0, 7]), None),
        newneigh(socket.AF_INET, NUD_FAILED, bytes([10, 9, 0, 8]), mac),
        newneigh(socket.AF_INET, NUD_NOARP, bytes([10, 9, 0, 9]), bytes(6)),
        newneigh(socket.AF_INET6, NUD_REACHABLE,
                 ipaddress.IPv6Address("2001:db8::20").packed, mac),
        newneigh(socket.AF_INET6, NUD_REACHABLE,
                 ipaddress.IPv6Address("2001:db8::21").packed, bytes(6)),
    ])
    records = [parse_neighbour(payload) for _, _, payload in parse_messages(data)]
    table = from_netlink([record for record in records if record is not None])
    assert table == {"10.9.0.5": "a0:d3:c1:4a:2b:3c", "10.9.0.6": "a0:d3:c1:4a:2b:3c",
                     "2001:db8::20": "a0:d3:c1:4a:2b:3c"}


def test_a_truncated_datagram_is_an_error_not_a_guess() -> None:
    data = newneigh(socket.AF_INET, NUD_REACHABLE, bytes([10, 9, 0, 5]), bytes(6))
    with pytest.raises(NetlinkError, match="overruns"):
        list(parse_messages(data[:-8]))
    with pytest.raises(NetlinkError, match="too short"):
        parse_neighbour(b"\x02\x00")


@given(st.binary(max_size=400))
def test_the_parsers_never_raise_anything_but_netlink_errors(data: bytes) -> None:
    try:
        for kind, _flags, payload in parse_messages(data):
            if kind == RTM_NEWADDR:
                parse_address(payload)
            elif kind == RTM_NEWNEIGH:
                parse_neighbour(payload)
    except NetlinkError:
        pass


@linux_only
def test_the_kernel_lists_this_hosts_loopback_addresses() -> None:
    records = read_addresses()
    assert any(record.local == ipaddress.IPv4Address("127.0.0.1") for record in records)
    host = read_host_addresses()
    assert host.unavailable is None
    assert ipaddress.IPv4Address("127.0.0.1") in host.addresses


@linux_only
def test_the_kernel_neighbour_dump_ends_and_parses() -> None:
    for family in (socket.AF_INET, socket.AF_INET6):
        for record in read_neighbours(family):
            assert record.destination is None or record.destination.version == \
                (4 if family == socket.AF_INET else 6)
