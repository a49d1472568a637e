"""The pure rules behind issue 10's items 3, 5, 6 and 7: request hygiene, cross-site
navigation, log redaction, sign-out headers and the pending sign-in limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.log_redaction import MAX_URL, log_detail, log_url
from ewsgate.relay.navigation import Landings, check_navigation, same_origin_path
from ewsgate.relay.request_hygiene import check_header_fields, check_target, stripped
from ewsgate.relay.sign_in_limits import PendingSignIns, client_key
from ewsgate.relay.sign_out import clearing_headers, sign_out_allowed


@pytest.mark.parametrize("target,refused", [
    (b"/", False), (b"/status.html?x=%2F..%2F&y=#", True), (b"/a/b.c/..d/", False),
    (b"/cgi?next=/../x", False), (b"/cgi?path=%2fetc%2fpasswd", False),
    (b"/..%2f..%2fx", True), (b"/%2e%2e/", True), (b"/%2E./x", True), (b"/a/./b", True),
    (b"/a/..", True), (b"/a#b", True), (b"/a\\b", True), (b"/%5cx", True), (b"/x%00.html", True),
    (b"/a%2Fb", True), (b"/\x1b[31m", True), (b"/\xc3\xa9", True), (b"/%C3%A9", False),
])
def test_ambiguous_targets(target: bytes, refused: bool) -> None:
    assert (check_target(target) is not None) is refused


@pytest.mark.parametrize("name,value,code", [
    (b"Content_Length", b"5", "header_name_underscore"),
    (b"X_Forwarded_Host", b"evil", "header_name_underscore"),
    (b"User-Agent", b"x\x1b[2Jy", "header_value_bad_byte"),
    (b"Cookie", b"a=\xff", "header_value_bad_byte"),
    (b"X-Note", b"a\x7fb", "header_value_bad_byte"),
    (b"X-Note", b"tab\tinside", None),
    (b"Accept", b"text/html, */*;q=0.8", None),
])
def test_header_fields(name: bytes, value: bytes, code: str | None) -> None:
    refusal = check_header_fields([(b"Host", b"x"), (name, value)])
    assert (refusal.code if refusal else None) == code
    if refusal is not None:
        assert name.decode() in refusal.message


@pytest.mark.parametrize("name", [
    b"x-original-url", b"x-rewrite-url", b"x-client-ip", b"true-client-ip", b"x-forwarded-for",
    b"x-forwarded-host", b"x-forwarded-prefix", b"forwarded", b"x-real-ip", b"via",
    b"x-http-method-override", b"x-original-host",
])
def test_forwarding_and_override_headers_are_stripped(name: bytes) -> None:
    assert stripped(name)


def test_ordinary_headers_are_not_stripped() -> None:
    assert not any(stripped(n) for n in (b"accept", b"authorization", b"user-agent", b"x-csrf"))


@pytest.mark.parametrize("site,target,refused", [
    (b"cross-site", b"/", False), (b"same-site", b"/", False),
    (b"cross-site", b"/?reboot=1", True), (b"cross-site", b"/reboot.cgi", True),
    (b"Same-Site", b"/x", True), (b"same-origin", b"/reboot.cgi", False),
    (b"none", b"/deep", False), (None, b"/deep", False),
])
def test_navigation_from_another_site_lands_on_the_start_page(
        site: bytes | None, target: bytes, refused: bool) -> None:
    fields = {} if site is None else {b"sec-fetch-site": site}
    assert (check_navigation(fields, target) is not None) is refused


@pytest.mark.parametrize("url,expected", [
    ("/login?user=a&password=hunter2&x=1", "/login?user=a&password=\u2026&x=1"),
    ("/a?access_token=T&TOKEN=u&Pass%77ord=p&pwd=1&passwd=2&secret=3&key=4&community=public"
     "&code=9", "/a?access_token=\u2026&TOKEN=\u2026&Pass%77ord=\u2026&pwd=\u2026&passwd=\u2026"
     "&secret=\u2026&key=\u2026&community=\u2026&code=\u2026"),
    ("/status?state=idle&keys=1", "/status?state=idle&keys=1"),
    ("/.ewsgate/callback?code=C&state=S&iss=x",
     "/.ewsgate/callback?code=\u2026&state=\u2026&iss=x"),
    ("/a\x1b[31mred", "/a\\x1b[31mred"),
    ("/a\\b\u0085", "/a\\x5cb\\x85"),
    ("/plain", "/plain"),
])
def test_log_urls_are_redacted_and_escaped(url: str, expected: str) -> None:
    assert log_url(url) == expected


def test_a_long_url_says_how_much_was_cut() -> None:
    url = "/big?q=" + "x" * 30_000
    logged = log_url(url)
    assert len(logged) <= MAX_URL
    kept, _, marker = logged.rpartition("\u2026[+")
    assert marker.endswith(" bytes]")
    assert int(marker[:-len(" bytes]")]) == len(url.encode()) - len(kept.encode())
    assert url.startswith(kept)


@given(st.text(max_size=3000))
def test_log_urls_never_carry_control_characters(url: str) -> None:
    logged = log_url(url)
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in logged)
    assert len(logged) <= MAX_URL


def test_details_are_escaped_and_capped() -> None:
    assert log_detail(None) is None
    assert log_detail("bad\r\nline") == "bad\\x0d\\x0aline"
    assert log_detail("d" * 900).endswith("[+424 bytes]")


def test_clearing_headers_expire_every_cookie_sent() -> None:
    headers = clearing_headers(b"__Host-ewsgate_rt=v1.x.y; AuthCookie=1; bad name=2; AuthCookie=3")
    assert headers[0] == (b"Clear-Site-Data", b'"cache", "storage"')
    names = [value.split(b"=", 1)[0] for name, value in headers[1:]]
    assert names == [b"__Host-ewsgate_rt", b"AuthCookie"]
    assert all(b"Max-Age=0" in value and b"Path=/" in value for _, value in headers[1:])
    assert sign_out_allowed(None) and sign_out_allowed(b"same-origin")
    assert not sign_out_allowed(b"cross-site") and not sign_out_allowed(b"same-site")


def test_a_full_session_refuses_new_sign_ins_and_evicts_nobody() -> None:
    clock = ManualClock()
    table: PendingSignIns[int] = PendingSignIns(clock, ttl=300, per_session=3,
                                                per_client_per_minute=100)
    for n in range(3):
        assert table.add(f"s{n}", "A", f"10.0.0.{n}", n) is None
    refused = table.add("s3", "A", "10.0.0.9", 3)
    assert refused is not None and refused.code == "too_many_pending_sign_ins"
    assert refused.retry_after > 0
    assert table.add("b0", "B", "10.0.0.9", 9) is None  # another session is not affected
    assert table.pop("s0") == ("A", clock.now(), 0)  # the first sign-in was kept
    assert table.pop("s0") is None  # single use
    assert table.add("s4", "A", "10.0.0.9", 4) is None
    clock.advance(301)
    assert table.pending_for("A") == 0 and table.pop("s1") is None


def test_sign_ins_are_rate_limited_per_client_address() -> None:
    clock = ManualClock()
    table: PendingSignIns[int] = PendingSignIns(clock, ttl=300, per_session=100,
                                                per_client_per_minute=5)
    for n in range(5):
        assert table.add(f"a{n}", f"S{n}", "2001:db8::1", n) is None
    refused = table.add("a5", "S5", "2001:db8::ffff", 5)  # same /64
    assert refused is not None and refused.code == "sign_in_rate_limited"
    assert table.add("c0", "S5", "2001:db8:0:1::1", 0) is None  # another /64
    assert table.add("d0", "S5", "192.0.2.1", 0) is None
    clock.advance(12)  # one token back (5 a minute)
    assert table.add("a6", "S6", "2001:db8::1", 6) is None
    assert table.add("a7", "S7", "2001:db8::1", 7) is not None


def test_the_global_ceiling_refuses_rather_than_evicts() -> None:
    clock = ManualClock()
    table: PendingSignIns[int] = PendingSignIns(clock, ttl=300, per_session=2,
                                                per_client_per_minute=100, max_total=4)
    for n in range(4):
        assert table.add(f"s{n}", f"S{n // 2}", f"10.0.0.{n}", n) is None
    refused = table.add("s9", "S9", "10.0.1.1", 9)
    assert refused is not None and refused.code == "relay_sign_ins_full"
    assert len(table) == 4 and table.pop("s0") is not None


def test_client_keys() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8::1") == client_key("2001:db8::2") == "2001:db8::/64"
    assert client_key(None) == "-"


def test_landings_are_per_session_short_lived_and_bounded() -> None:
    landings = Landings(ttl=30, per_session=2)
    landings.allow("A", "/app", now=100)
    assert landings.allowed("A", "/app", now=129) and not landings.allowed("A", "/app", now=130)
    assert not landings.allowed("B", "/app", now=101)
    landings.allow("A", "/b", now=100)
    landings.allow("A", "/c", now=100)
    assert not landings.allowed("A", "/app", now=101)  # the oldest went first
    assert check_navigation({b"sec-fetch-site": b"cross-site"}, b"/app", landed=True) is None


@pytest.mark.parametrize("location,expected", [
    ("/app/index.html", "/app/index.html"), ("index.html?x=1", "/dir/index.html?x=1"),
    ("https://s-a.rt.example.com/x", "/x"), ("https://S-A.rt.example.com/x#f", "/x"),
    ("https://s-b.rt.example.com/x", None), ("//evil.example/", None),
    ("http://s-a.rt.example.com/", None),
])
def test_same_origin_paths(location: str, expected: str | None) -> None:
    assert same_origin_path("https://s-a.rt.example.com", "/dir/page", location) == expected
