"""The browser's host parser: the URL Standard's examples, and properties over every spelling."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.relay.hosts import is_internal, parse_host, parse_ipv4, url_target

# (input, serialised host or None for failure): the URL Standard's host parsing examples and
# the web-platform-tests urltestdata cases for IPv4 and IDNA
HOSTS = [
    ("example.com", "example.com"),
    ("EXAMPLE.COM", "example.com"),
    ("example.com.", "example.com."),
    ("0x7f.1", "127.0.0.1"),
    ("192.0x00A80001", "192.168.0.1"),
    ("0xc0.0250.01", "192.168.0.1"),
    ("0Xc0.0250.01", "192.168.0.1"),
    ("%30%78%63%30%2e%30%32%35%30.01", "192.168.0.1"),
    ("\uff10\uff38\uff43\uff10\uff0e\uff10\uff12\uff15\uff10\uff0e\uff10\uff11", "192.168.0.1"),
    ("4294967295", "255.255.255.255"),
    ("4294967296", None),
    ("0x100000000", None),
    ("0x", "0.0.0.0"),
    ("256.256.256.256", None),
    ("1.2.3.08", None),
    ("09.0.0.1", None),
    ("foo.09", None),
    ("foo.0x4", None),
    ("10.0.0.7.", "10.0.0.7"),
    ("10.0.7", "10.0.0.7"),
    ("10.7", "10.0.0.7"),
    ("167772167", "10.0.0.7"),
    ("012.0.0.7", "10.0.0.7"),
    ("0x0a.0.0.7", "10.0.0.7"),
    ("0x0A.0x0.0.07", "10.0.0.7"),
    ("[::1]", "[::1]"),
    ("[0:0::1]", "[::1]"),
    ("[::127.0.0.1]", "[::7f00:1]"),
    ("[::1", None),
    ("[fe80::1%25eth0]", None),
    ("exa mple.com", None),
    ("exa%20mple.com", None),
    ("a<b", None),
    ("b\u00fccher.de", "xn--bcher-kva.de"),
    ("localhost.", "localhost."),
]


@pytest.mark.parametrize("text,expected", HOSTS)
def test_host_parser_matches_the_url_standard(text: str, expected: str | None) -> None:
    host = parse_host(text)
    assert (host.text if host else None) == expected


def _spell(number: int, radix: str) -> str:
    return {"dec": str(number), "hex": hex(number), "HEX": "0X" + format(number, "X"),
            "oct": "0" + format(number, "o")}[radix]


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.lists(
    st.sampled_from(["dec", "hex", "HEX", "oct"]), min_size=4, max_size=4), st.booleans())
def test_every_ipv4_spelling_parses_to_its_address(value: int, parts: int, radices: list[str],
                                                   trailing_dot: bool) -> None:
    """1-4 parts, each decimal, hex or octal, the last one filling the remaining bytes."""
    octets = list(value.to_bytes(4, "big"))
    numbers = [*octets[:parts - 1], int.from_bytes(bytes(octets[parts - 1:]), "big")]
    text = ".".join(_spell(n, r) for n, r in zip(numbers, radices, strict=False))
    text += "." if trailing_dot else ""
    host = parse_host(text)
    assert host is not None and host.kind == "ipv4"
    assert host.address == ipaddress.IPv4Address(value)
    assert parse_ipv4(text) == ipaddress.IPv4Address(value)


@given(st.integers(0, 2**32 - 1), st.integers(2, 4))
def test_a_part_out_of_range_fails(value: int, parts: int) -> None:
    octets = list(value.to_bytes(4, "big"))
    numbers = [*octets[:parts - 1], int.from_bytes(bytes(octets[parts - 1:]), "big")]
    numbers[0] += 256
    assert parse_host(".".join(map(str, numbers))) is None


@given(st.text(max_size=60))
def test_host_parser_never_raises(text: str) -> None:
    host = parse_host(text)
    if host is not None:
        assert host.text.isascii()


@given(st.text(max_size=80))
def test_url_target_never_raises(text: str) -> None:
    url_target(text)


# (URL from a session page, scheme, host, port) or None (the browser refuses it)
TARGETS = [
    ("/status", "https", None, None),
    ("status?x=1", "https", None, None),
    ("https:/10.0.0.7/x", "https", None, None),
    ("http://0x0a.0.0.7/", "http", "10.0.0.7", 80),
    ("http:10.0.0.7/x", "http", "10.0.0.7", 80),
    ("http:\\\\10.0.0.7", "http", "10.0.0.7", 80),
    ("HTTP:///10.0.7", "http", "10.0.0.7", 80),
    ("//10.0.0.7/", "https", "10.0.0.7", 443),
    ("\\\\10.0.0.7/", "https", "10.0.0.7", 443),
    ("/\\10.0.0.7/", "https", "10.0.0.7", 443),
    ("https:\\\\10.0.0.7", "https", "10.0.0.7", 443),
    (" \t http://user:pw@10.0.0.7:8080/", "http", "10.0.0.7", 8080),
    ("ht\ttp://10.0.0.7/", "http", "10.0.0.7", 80),
    ("http://10.0.0.7\n.evil/", "http", "10.0.0.7.evil", 80),
    ("http://[::ffff:10.0.0.7]/", "http", "[::ffff:a00:7]", 80),
    ("http://evil.example@10.0.0.7/", "http", "10.0.0.7", 80),
    ("http://10.0.0.7#@evil.example/", "http", "10.0.0.7", 80),
    ("javascript:alert(1)", "javascript", None, None),
    ("http://10.0.0.7:99999/", None, None, None),
    ("http://10.0.0.256/", None, None, None),
    ("http:///", None, None, None),
]


@pytest.mark.parametrize("url,scheme,host,port", TARGETS)
def test_url_targets_as_a_browser_resolves_them(url: str, scheme: str | None, host: str | None,
                                                port: int | None) -> None:
    target = url_target(url)
    if scheme is None:
        assert target is None
        return
    assert target is not None
    assert target.scheme == scheme
    assert (target.host.text if target.host else None) == host
    assert target.port == port


@pytest.mark.parametrize("text,internal", [
    ("10.0.0.7", True), ("0x7f.1", True), ("169.254.1.1", True), ("100.64.0.1", True),
    ("0.0.0.0", True), ("[::1]", True), ("[fe80::1]", True), ("[fd00::1]", True),
    ("[::ffff:192.168.1.1]", True), ("localhost", True), ("localhost.", True),
    ("printer.localhost", True), ("printer", True), ("nas.local", True), ("x.home.arpa", True),
    ("8.8.8.8", False), ("www.hp.com", False), ("[2001:4860::8888]", False),
])
def test_internal_hosts(text: str, internal: bool) -> None:
    host = parse_host(text)
    assert host is not None
    assert is_internal(host) is internal
