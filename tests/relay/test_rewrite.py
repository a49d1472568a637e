"""The LAN → session-origin rewriter: each rule, and chunk-split invariance (hypothesis)."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewsgate.relay.rewrite import (
    BodyDecoder,
    LanRewriter,
    is_internal_host,
    rewritable_content_type,
)
from ewsgate.relay.upstream import DeviceView, Endpoint

SESSION = "s-abcdefghijklmnopqrstuvwxyz234567.rt.example.com"
DEVICE = DeviceView(ip="10.0.0.5", hostname="printer.lan",
                    endpoints=(Endpoint("http", 80), Endpoint("https", 443),
                               Endpoint("http", 8080)))


def rewrite(text: str, device: DeviceView = DEVICE, session: str = SESSION) -> str:
    rewriter = LanRewriter(device, session).body_rewriter()
    return (rewriter.feed(text.encode()) + rewriter.finish()).decode()


@pytest.mark.parametrize("before,after", [
    ('<a href="http://10.0.0.5/status">', f'<a href="https://{SESSION}/status">'),
    ("https://10.0.0.5:443/x", f"https://{SESSION}/x"),
    ("http://10.0.0.5:8080/x", f"https://{SESSION}/x"),
    ("http://10.0.0.5:9100/x", "http://10.0.0.5:9100/x"),  # another service: left alone
    ("ws://10.0.0.5/panel", f"wss://{SESSION}/panel"),
    ("wss://10.0.0.5:443/panel", f"wss://{SESSION}/panel"),
    ('src="//10.0.0.5/img.png"', f'src="//{SESSION}/img.png"'),
    ("url(http://10.0.0.5/bg.png)", f"url(https://{SESSION}/bg.png)"),
    ('"http:\\/\\/10.0.0.5\\/api"', f'"https:\\/\\/{SESSION}\\/api"'),
    ("HTTP://PRINTER.LAN/a", f"https://{SESSION}/a"),
    ("http://printer.lan", f"https://{SESSION}"),
    ("http://10.0.0.5", f"https://{SESSION}"),
    ("http://10.0.0.5?x", f"https://{SESSION}?x"),
    ("see http://10.0.0.5.", f"see https://{SESSION}."),
    # look-alikes are not the device
    ("http://10.0.0.55/", "http://10.0.0.55/"),
    ("http://110.0.0.5/", "http://110.0.0.5/"),
    ("http://10.0.0.5.evil.com/", "http://10.0.0.5.evil.com/"),
    ("http://printer.lan.evil.com/", "http://printer.lan.evil.com/"),
    ("http://myprinter.lan/", "http://myprinter.lan/"),
    ("ftp://10.0.0.5/", "ftp://10.0.0.5/"),
    ("xhttp://10.0.0.5/", "xhttp://10.0.0.5/"),
    ("10.0.0.5", "10.0.0.5"),  # a bare IP in text is not a URL
])
def test_body_rules(before: str, after: str) -> None:
    assert rewrite(before) == after


def test_ipv6_device_and_non_default_session_port() -> None:
    device = DeviceView(ip="fd00::5", endpoints=(Endpoint("http", 80),))
    assert rewrite("http://[fd00::5]/x http://[fd00::5]:80/y", device,
                   "s-x.rt.localhost:8443") == (
        "https://s-x.rt.localhost:8443/x https://s-x.rt.localhost:8443/y")


def test_set_cookie_domain_is_stripped_and_relay_cookies_dropped() -> None:
    rw = LanRewriter(DEVICE, SESSION)
    assert rw.rewrite_set_cookie("a=1; Domain=rt.example.com; Path=/; Secure") == (
        "a=1; Path=/; Secure")
    assert rw.rewrite_set_cookie("a=1; domain=10.0.0.5") == "a=1"
    assert rw.rewrite_set_cookie("a=1; Path=web") == "a=1"
    assert rw.rewrite_set_cookie("__Host-ewsgate_rt=x; Path=/; Secure") is None
    assert rw.rewrite_set_cookie("__host-EWSGATE_st=x") is None


def test_location_refresh_and_internal_redirects() -> None:
    rw = LanRewriter(DEVICE, SESSION)
    assert rw.rewrite_location("http://10.0.0.5/a?b=http://10.0.0.5/") == (
        f"https://{SESSION}/a?b=https://{SESSION}/")
    assert rw.rewrite_location("/relative") == "/relative"
    assert rw.rewrite_refresh("3;URL=http://printer.lan/x") == f"3;URL=https://{SESSION}/x"
    assert rw.leaves_session(f"https://{SESSION}/x") is None
    assert rw.leaves_session("/x") is None
    assert rw.leaves_session("http://192.168.0.1/") == "192.168.0.1"
    assert rw.leaves_session("http://127.0.0.1:631/") == "127.0.0.1"
    assert rw.leaves_session("http://intranet/") == "intranet"
    assert rw.leaves_session("https://www.example.com/help") is None


def test_internal_hosts() -> None:
    assert is_internal_host("10.1.2.3") and is_internal_host("[fe80::1]")
    assert is_internal_host("printer.local") and is_internal_host("localhost")
    assert not is_internal_host("8.8.8.8") and not is_internal_host("example.com")


def test_rewritable_types() -> None:
    assert rewritable_content_type("text/html; charset=Shift_JIS")
    assert rewritable_content_type("application/javascript")
    assert rewritable_content_type("application/ld+json")
    assert not rewritable_content_type("image/png")
    assert not rewritable_content_type("application/octet-stream")
    assert not rewritable_content_type(None)


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress,
                                      lambda d: zlib.compress(d)[2:-4]])  # raw deflate
def test_decoder_streams_gzip_and_deflate(compress) -> None:
    data = bytes(range(256)) * 2000
    coding = "gzip" if compress is gzip.compress else "deflate"
    decoder = BodyDecoder(coding)
    blob = compress(data)
    out = b"".join(b"".join(decoder.decode(blob[i:i + 777])) for i in range(0, len(blob), 777))
    assert out + decoder.flush() == data


def test_decoder_bounds_each_step() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    pieces = BodyDecoder("gzip").decode(bomb)
    assert max(len(p) for p in pieces) <= 64 * 1024
    assert sum(len(p) for p in pieces) == 5_000_000


_URLS = ["http://10.0.0.5/a", "ws://10.0.0.5:80/p", "//printer.lan/x",
         "http:\\/\\/10.0.0.5\\/y", "https://10.0.0.55/", "http://10.0.0.5:9100/",
         "HTTPS://Printer.Lan:443/", "http://10.0.0.5", "x10.0.0.5"]
_text = st.lists(st.one_of(st.sampled_from(_URLS), st.text(
    alphabet="ab/:.\"'<> =\n0159xhtpsw", max_size=12)), max_size=25).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=_text, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_chunk_split_invariance(text: str, cuts: list[int]) -> None:
    """However the body is cut into chunks, the output equals the one-piece rewrite."""
    data = text.encode()
    whole = rewrite(text).encode()
    rewriter = LanRewriter(DEVICE, SESSION).body_rewriter()
    points = sorted({min(c, len(data)) for c in cuts})
    out, last = [], 0
    for point in [*points, len(data)]:
        out.append(rewriter.feed(data[last:point]))
        last = point
    out.append(rewriter.finish())
    assert b"".join(out) == whole


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_rewrite_the_same_in_any_step_size(data: bytes, step: int) -> None:
    rewriter = LanRewriter(DEVICE, SESSION).body_rewriter()
    out = b"".join(rewriter.feed(data[i:i + step]) for i in range(0, len(data), step))
    out += rewriter.finish()
    one = LanRewriter(DEVICE, SESSION).body_rewriter()
    assert out == one.feed(data) + one.finish()


@settings(max_examples=200, deadline=None)
@given(text=_text)
def test_anchored_scan_equals_a_plain_regex_substitution(text: str) -> None:
    """The host-anchored scan finds exactly what the full regex finds at every position."""
    rw = LanRewriter(DEVICE, SESSION)
    data = text.encode()
    streamed = rw.body_rewriter()
    assert streamed.feed(data) + streamed.finish() == rw.pattern.sub(rw._replace, data)
