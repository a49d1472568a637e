"""Pure parts of the identity check: MAC/serial normalisation, neighbour-table parsing, OIDs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.agent.snmp.neighbours import parse_ip_neigh, parse_proc_net_arp
from ewsgate.agent.snmp.oids import (
    PRT_GENERAL_SERIAL,
    VENDOR_SERIAL_OIDS,
    if_index_oids,
    parse_oid,
    serial_oids,
    vendor_from_make,
    vendor_from_sys_object_id,
)
from ewsgate.agent.snmp.values import (
    MacError,
    decode_serial,
    format_mac,
    mac_from_octets,
    normalize_mac,
    serials_equal,
)


@pytest.mark.parametrize("text", ["a0:d3:c1:4a:2b:3c", "A0-D3-C1-4A-2B-3C", "a0d3.c14a.2b3c",
                                  "A0D3C14A2B3C", " a0:d3:c1:4a:2b:3c "])
def test_mac_spellings_normalise_to_one_form(text: str) -> None:
    assert normalize_mac(text) == "a0:d3:c1:4a:2b:3c"


@pytest.mark.parametrize("text", ["", "a0:d3:c1:4a:2b", "a0:d3:c1:4a:2b:3c:00",
                                  "zz:d3:c1:4a:2b:3c"])
def test_bad_mac_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(MacError, match="a0:d3:c1:4a:2b:3c"):
        normalize_mac(text)


@given(st.binary(min_size=6, max_size=6))
def test_any_six_bytes_round_trip_through_text(raw: bytes) -> None:
    assert bytes.fromhex(normalize_mac(format_mac(raw)).replace(":", "")) == raw


def test_empty_or_zero_if_phys_address_is_no_mac() -> None:
    assert mac_from_octets(b"") is None
    assert mac_from_octets(b"\x00" * 6) is None
    assert mac_from_octets(b"\x01\x02") is None
    assert mac_from_octets(bytes.fromhex("a0d3c14a2b3c")) == "a0:d3:c1:4a:2b:3c"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"CNBRM5K0QZ", "CNBRM5K0QZ"),
    (b"CNBRM5K0QZ\x00\x00\x00\x00\x00\x00", "CNBRM5K0QZ"),  # HP: NUL padded
    (b"0x434E42524D354B30515A", "CNBRM5K0QZ"),  # HP: hex-encoded text
    (b"0x434e42524d354b30515a0000", "CNBRM5K0QZ"),
    (b"  QUV9600664 ", "QUV9600664"),
    (b"4142", "4142"),  # bare hex digits are a serial of their own, not decoded
    (b"", None),
    (b"\x00\x00", None),
    (b"\xff\xfe\x01", None),
    (None, None),
])
def test_serial_values_decode(raw: bytes | None, expected: str | None) -> None:
    assert decode_serial(raw) == expected


def test_serials_compare_ignoring_case_and_spaces() -> None:
    assert serials_equal("cnbrm5k0qz", " CNBRM5K0QZ")
    assert not serials_equal("CNBRM5K0QZ", "CNBRM5K0QY")


@given(st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=1, max_size=20))
def test_hex_text_serial_round_trips(serial: str) -> None:
    assert decode_serial(b"0x" + serial.encode().hex().encode()) == serial


PROC_NET_ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.20     0x1         0x2         a0:d3:c1:4a:2b:3c     *        eth0
192.168.1.21     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.22     0x1         0x2         00:00:00:00:00:00     *        eth0
192.168.1.23     0x1         0x6         3c:2a:f4:00:11:22     *        eth0
"""


def test_proc_net_arp_keeps_complete_entries_only() -> None:
    assert parse_proc_net_arp(PROC_NET_ARP) == {
        "192.168.1.20": "a0:d3:c1:4a:2b:3c",
        "192.168.1.23": "3c:2a:f4:00:11:22",
    }


IP_NEIGH = """\
192.168.1.20 dev eth0 lladdr a0:d3:c1:4a:2b:3c REACHABLE
192.168.1.30 dev eth0 lladdr 3c:2a:f4:00:11:22 STALE
192.168.1.31 dev eth0  INCOMPLETE
192.168.1.32 dev eth0 lladdr 11:22:33:44:55:66 FAILED
fe80::a2d3:c1ff:fe4a:2b3c dev eth0 lladdr a0:d3:c1:4a:2b:3c router REACHABLE
2001:db8::20 dev eth0 lladdr A0:D3:C1:4A:2B:3D DELAY
"""


def test_ip_neigh_parses_v4_and_v6_and_skips_unresolved() -> None:
    assert parse_ip_neigh(IP_NEIGH) == {
        "192.168.1.20": "a0:d3:c1:4a:2b:3c",
        "192.168.1.30": "3c:2a:f4:00:11:22",
        "fe80::a2d3:c1ff:fe4a:2b3c": "a0:d3:c1:4a:2b:3c",
        "2001:db8::20": "a0:d3:c1:4a:2b:3d",
    }


@pytest.mark.parametrize(("make", "vendor"), [
    ("HP", "hp"), ("Hewlett-Packard", "hp"), ("HP Inc.", "hp"), ("RICOH", "ricoh"),
    ("Kyocera Mita", "kyocera"), ("Canon", "canon"), ("Brother", "brother"),
    ("Lexmark International", "lexmark"), ("Konica Minolta", "konica"),
    ("Fuji Xerox", "xerox"), ("Epson", None), ("", None),
])
def test_make_names_a_vendor(make: str, vendor: str | None) -> None:
    assert vendor_from_make(make) == vendor


def test_sys_object_id_names_the_vendor_by_enterprise_number() -> None:
    assert vendor_from_sys_object_id(parse_oid("1.3.6.1.4.1.11.2.3.9.1")) == "hp"
    assert vendor_from_sys_object_id(parse_oid("1.3.6.1.4.1.18334.1.1")) == "konica"
    assert vendor_from_sys_object_id(parse_oid("1.3.6.1.4.1.8072.3.2.10")) is None
    assert vendor_from_sys_object_id(parse_oid("1.3.6.1.2.1.1")) is None
    assert vendor_from_sys_object_id(None) is None


def test_serial_oids_ask_printer_mib_first_then_the_vendor() -> None:
    assert serial_oids("lexmark") == (PRT_GENERAL_SERIAL, *VENDOR_SERIAL_OIDS["lexmark"])
    assert serial_oids("xerox") == (PRT_GENERAL_SERIAL,)
    everything = serial_oids(None)
    assert everything[0] == PRT_GENERAL_SERIAL
    assert set(VENDOR_SERIAL_OIDS["hp"]) <= set(everything)
    assert parse_oid("1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.3.0") in VENDOR_SERIAL_OIDS["hp"]


def test_if_index_oids_for_v4_and_v6() -> None:
    v4 = if_index_oids("10.0.0.5")
    assert v4[0] == parse_oid("1.3.6.1.2.1.4.20.1.2.10.0.0.5")
    assert v4[1] == parse_oid("1.3.6.1.2.1.4.34.1.3.1.4.10.0.0.5")
    (v6,) = if_index_oids("2001:db8::1")
    assert v6[:13] == parse_oid("1.3.6.1.2.1.4.34.1.3.2.16.32")
    assert len(v6) == 12 + 16
