"""The agent's address policy, as pure rules: a table of addresses and hypothesis over spellings."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.agent.address_policy import (
    ALLOW_LOOPBACK_FOR_TESTS,
    METADATA_ENDPOINTS,
    AddressPolicy,
    HostAddresses,
    SiteSubnetError,
    TestOnlySwitch,
    judge,
    parse_site_subnets,
)

HOST = HostAddresses(addresses=frozenset({ipaddress.ip_address("10.9.0.1"),
                                          ipaddress.ip_address("2001:db8:9::1"),
                                          ipaddress.ip_address("127.0.0.1"),
                                          ipaddress.ip_address("::1")}),
                     broadcasts=frozenset({ipaddress.ip_address("10.9.0.255")}))


def policy(**fields: object) -> AddressPolicy:
    return AddressPolicy(host_addresses=lambda: HOST, **fields)  # type: ignore[arg-type]


REFUSED = [
    ("127.0.0.1", "address.loopback", "loopback"),
    ("127.53.0.1", "address.loopback", "loopback"),
    ("::1", "address.loopback", "loopback"),
    ("169.254.169.254", "address.metadata", "cloud metadata endpoint"),
    ("fd00:ec2::254", "address.metadata", "cloud metadata endpoint"),
    ("100.100.100.200", "address.metadata", "cloud metadata endpoint"),
    ("192.0.0.192", "address.metadata", "cloud metadata endpoint"),
    ("100.64.0.1", "address.shared", "100.64.0.0/10"),
    ("100.127.255.254", "address.shared", "100.64.0.0/10"),
    ("169.254.1.1", "address.link_local", "link-local"),
    ("fe80::1", "address.link_local", "link-local"),
    ("224.0.0.251", "address.multicast", "multicast"),
    ("239.255.255.250", "address.multicast", "multicast"),
    ("ff02::1", "address.multicast", "multicast"),
    ("0.0.0.0", "address.unspecified", "unspecified"),
    ("::", "address.unspecified", "unspecified"),
    ("0.1.2.3", "address.reserved", "this network"),
    ("240.0.0.1", "address.reserved", "reserved"),
    ("255.255.255.255", "address.broadcast", "limited broadcast"),
    ("192.0.0.8", "address.reserved", "192.0.0.0/24"),
    ("fec0::1", "address.reserved", "site-local"),
    ("10.9.0.1", "address.own_host", "agent's own host"),
    ("2001:db8:9::1", "address.own_host", "agent's own host"),
    ("10.9.0.255", "address.broadcast", "broadcast or network address of one of this host"),
    ("::ffff:169.254.169.254", "address.metadata", "169.254.169.254 written as IPv4-mapped"),
    ("::ffff:127.0.0.1", "address.loopback", "127.0.0.1 written as IPv4-mapped"),
    ("::ffff:10.0.0.5", "address.v4_in_v6", "10.0.0.5 written as IPv4-mapped"),
    ("::169.254.169.254", "address.metadata", "IPv4-compatible"),
    ("::ffff:0:a9fe:a9fe", "address.metadata", "IPv4-translated"),
    ("64:ff9b::a9fe:a9fe", "address.metadata", "NAT64"),
    ("64:ff9b:1::1", "address.v4_in_v6", "local-use NAT64"),
    ("2002:a9fe:a9fe::1", "address.metadata", "6to4"),
    ("2002:7f00:1::1", "address.loopback", "6to4"),
    # Teredo: client 169.254.169.254 obfuscated (xor 0xffffffff) in the last 32 bits
    ("2001:0:4136:e378:8000:63bf:5601:5601", "address.metadata", "Teredo"),
    ("fe80::1%eth0", "address.zone", "zone index"),
    ("printer.local", "address.not_ip", "not an IP address"),
    ("", "address.not_ip", "not an IP address"),
    ("127.1", "address.not_ip", "not an IP address"),
    ("0x7f000001", "address.not_ip", "not an IP address"),
    ("2130706433", "address.not_ip", "not an IP address"),
    (" 10.0.0.5", "address.not_ip", "not an IP address"),
]


@pytest.mark.parametrize(("address", "code", "why"), REFUSED)
def test_forbidden_addresses_are_refused_with_a_sentence(address: str, code: str,
                                                         why: str) -> None:
    refusal = policy().check(address)
    assert refusal is not None, address
    assert refusal.code == code
    assert why in refusal.message
    assert refusal.message.startswith("refused: ") and "the agent never contacts it" in \
        refusal.message


def test_the_metadata_refusal_reads_as_the_job_shows_it() -> None:
    refusal = policy().check("169.254.169.254")
    assert refusal is not None
    assert refusal.message == ("refused: 169.254.169.254 is the cloud metadata endpoint; the "
                               "agent never contacts it; check the device's recorded IP")


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.20", "172.16.4.4", "192.0.2.10",
                                     "8.8.8.8", "2001:db8::20", "fd12:3456::5", "10.9.0.5"])
def test_ordinary_device_addresses_are_allowed(address: str) -> None:
    assert policy().check(address) is None


def test_site_subnets_confine_the_agent() -> None:
    site = policy(site_subnets=parse_site_subnets("10.9.0.0/24, 2001:db8:5::/64"))
    assert site.check("10.9.0.5") is None
    assert site.check("2001:db8:5::20") is None
    outside = site.check("10.20.0.5")
    assert outside is not None and outside.code == "address.outside_site"
    assert "outside this installation's site subnets (10.9.0.0/24, 2001:db8:5::/64)" in \
        outside.message and "--site-subnets" in outside.message
    assert site.check("2001:db8:6::1") is not None
    # the network and broadcast addresses of a site subnet are never a device
    for edge in ("10.9.0.0", "10.9.0.255"):
        refusal = site.check(edge)
        assert refusal is not None and refusal.code == "address.broadcast", edge
    # a site subnet never re-opens what the fixed rules and the own-host rule refuse
    wide = policy(site_subnets=parse_site_subnets("0.0.0.0/0,::/0"))
    for address in ("169.254.169.254", "100.100.100.200", "10.9.0.1", "127.0.0.1",
                    "fd00:ec2::254"):
        assert wide.check(address) is not None, address


def test_the_loopback_switch_allows_loopback_and_nothing_else() -> None:
    switched = policy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
    assert switched.check("127.0.0.1") is None and switched.check("::1") is None
    assert switched.check("127.0.0.2") is None
    for address in [*(str(ip) for ip in METADATA_ENDPOINTS), "169.254.1.1", "10.9.0.1",
                    "10.9.0.255", "100.64.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1",
                    "0.0.0.0", "224.0.0.1"]:
        assert switched.check(address) is not None, address


@pytest.mark.parametrize("value", [True, 1, "ALLOW_LOOPBACK_FOR_TESTS", object(),
                                   TestOnlySwitch()])
def test_the_loopback_switch_is_an_object_no_lookalike_turns_on(value: object) -> None:
    with pytest.raises(TypeError):
        AddressPolicy(allow_loopback=value)  # type: ignore[arg-type]


def test_unreadable_host_addresses_fail_closed() -> None:
    blind = AddressPolicy(host_addresses=lambda: HostAddresses(unavailable="EPERM"))
    refusal = blind.check("10.0.0.5")
    assert refusal is not None and refusal.code == "address.host_unknown"
    assert "EPERM" in refusal.message


def test_the_host_is_asked_only_for_addresses_the_fixed_rules_allow() -> None:
    calls: list[int] = []

    def host() -> HostAddresses:
        calls.append(1)
        return HOST

    counting = AddressPolicy(host_addresses=host)
    assert counting.check("169.254.169.254") is not None and calls == []
    assert counting.check("10.0.0.5") is None and calls == [1]


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.5/24", "did you mean 10.0.0.0/24"),
    ("printers", "not a network"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("100.64.0.0/16", "carrier-grade NAT"),
    ("ff00::/8", "multicast"),
])
def test_bad_site_subnets_are_refused_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(SiteSubnetError, match=message):
        parse_site_subnets(text)


def test_site_subnets_parse_from_text_or_a_list() -> None:
    assert parse_site_subnets(["10.1.0.0/16", "2001:db8::/48"]) == \
        (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8::/48"))
    assert parse_site_subnets(" 10.1.0.0/16 ,, ") == (ipaddress.ip_network("10.1.0.0/16"),)


# --- hypothesis: every spelling of a forbidden address is refused --------------------------

_FORBIDDEN_V4 = st.one_of(
    st.sampled_from([ip for ip in METADATA_ENDPOINTS if ip.version == 4]),
    st.integers(0x7F000000, 0x7FFFFFFF).map(ipaddress.IPv4Address),      # 127/8
    st.integers(0xA9FE0000, 0xA9FEFFFF).map(ipaddress.IPv4Address),      # 169.254/16
    st.integers(0x64400000, 0x647FFFFF).map(ipaddress.IPv4Address),      # 100.64/10
    st.integers(0xE0000000, 0xFFFFFFFF).map(ipaddress.IPv4Address),      # multicast, 240/4
    st.integers(0x00000000, 0x00FFFFFF).map(ipaddress.IPv4Address),      # 0/8
)


def _v6_spellings(v4: ipaddress.IPv4Address) -> list[str]:
    value = int(v4)
    high, low = value >> 16, value & 0xFFFF
    return [
        f"::ffff:{v4}", f"::FFFF:{high:x}:{low:x}", f"0:0:0:0:0:ffff:{high:04x}:{low:04x}",
        f"::ffff:0:{v4}", f"64:ff9b::{v4}", f"2002:{high:x}:{low:x}::1",
        f"2001:0:4136:e378:8000:63bf:{high ^ 0xFFFF:x}:{low ^ 0xFFFF:x}",
    ]


@given(_FORBIDDEN_V4)
def test_any_v6_spelling_of_a_forbidden_v4_address_is_refused(v4: ipaddress.IPv4Address) -> None:
    rules = policy()
    assert rules.check(str(v4)) is not None
    for spelling in _v6_spellings(v4):
        refusal = rules.check(spelling)
        assert refusal is not None, spelling
        assert str(v4) in refusal.message, (spelling, refusal.message)


@given(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_no_v6_spelling_of_any_v4_address_is_allowed(v4: ipaddress.IPv4Address) -> None:
    """A device is dialled by its plain address; an IPv4 address in IPv6 clothing never is."""
    rules = policy()
    for spelling in _v6_spellings(v4):
        assert rules.check(spelling) is not None, spelling


_FORBIDDEN_V6 = st.one_of(
    st.just(ipaddress.IPv6Address("fd00:ec2::254")),
    st.just(ipaddress.IPv6Address("::1")),
    st.integers(0, 2**118 - 1).map(lambda n: ipaddress.IPv6Address((0xFE80 << 112) | n)),
    st.integers(0, 2**120 - 1).map(lambda n: ipaddress.IPv6Address((0xFF << 120) | n)),
)


def _text_spellings(ip: ipaddress.IPv6Address) -> list[str]:
    return [ip.compressed, ip.exploded, ip.exploded.upper(), ip.compressed.upper(),
            ":".join(part.lstrip("0") or "0" for part in ip.exploded.split(":"))]


@given(_FORBIDDEN_V6)
def test_any_text_spelling_of_a_forbidden_v6_address_is_refused(
        ip: ipaddress.IPv6Address) -> None:
    rules = policy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
    for spelling in _text_spellings(ip):
        if ip == ipaddress.IPv6Address("::1"):
            assert rules.check(spelling) is None  # the switch, and only for loopback
            assert policy().check(spelling) is not None
        else:
            assert rules.check(spelling) is not None, spelling
        assert rules.check(f"{spelling}%eth0") is not None


@given(st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
def test_the_verdict_does_not_depend_on_the_spelling(ip: ipaddress.IPv6Address) -> None:
    verdicts = {judge(spelling, host=HOST) is None for spelling in _text_spellings(ip)}
    assert len(verdicts) == 1, ip
    assert (judge(ip, host=HOST) is None) in verdicts
