"""Issue 10 items 3-7 over real TLS: what a hand-made request, a hostile device and another
site try, and what the relay answers, forwards and logs."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.hardening import HSTS
from ewsgate.relay.redirects import REFUSED_PATH

from .helpers import DOMAIN, FakePortal, RawServer, Relay, Seen, device_app

pytestmark = pytest.mark.integration


def _ok(request: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("Content-Type", "text/plain")], b"ok"


def _entries(tmp_path: Path) -> list[dict[str, Any]]:
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "spool").glob("segment-*")))
    return [json.loads(line) for line in lines.splitlines()]


def _head(relay: Relay, sid: str, cookie: str, target: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"GET " + target + b" HTTP/1.1", f"Host: {relay.host(sid)}".encode(),
                         f"Cookie: {cookie}".encode(), b"Sec-Fetch-Site: same-origin", *extra,
                         b"", b""])


# -- item 3: headers and paths ---------------------------------------------------------------

@pytest.mark.parametrize("extra,code", [
    (b"Content_Length: 5", "header_name_underscore"),
    (b"X_Forwarded_Host: intranet.example", "header_name_underscore"),
    (b"User-Agent: x\x1b[2Jowned", "header_value_bad_byte"),
    (b"X-Note: caf\xc3\xa9", "header_value_bad_byte"),
])
async def test_bad_header_names_and_values_are_refused(
        tmp_path: Path, portal: FakePortal, extra: bytes, code: str) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        answer = await relay.raw(sid, _head(relay, sid, cookie, b"/", extra))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert not seen.requests
    entry = _entries(tmp_path)[-1]
    assert entry["status"] == 400 and entry["outcome"] == "refused" and entry["detail"] == code


@pytest.mark.parametrize("target", [
    b"/..%2f..%2fx", b"/%2e%2e/", b"/a/%2E/b", b"/a#frag", b"/a/../b", b"/a\\b", b"/%5c%5cx",
    b"/x%00.cgi", b"/\x1b[31m",
])
async def test_ambiguous_targets_get_400_and_never_reach_the_device(
        tmp_path: Path, portal: FakePortal, target: bytes) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        answer = await relay.raw(sid, _head(relay, sid, cookie, target))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert not seen.requests
    entry = _entries(tmp_path)[-1]
    assert entry["outcome"] == "refused"
    # h11 refuses a control character in the request line before the relay's rules see it
    assert entry["detail"] in ("ambiguous_target", "target_bad_byte") or entry[
        "detail"].startswith("bad_request before parsing, client 127.0.0.1")
    assert "\x1b" not in entry["url"] and "\x1b" not in entry["detail"]


async def test_forwarding_and_override_headers_never_reach_the_device(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        sent = [b"X-Original-URL: /admin", b"X-Rewrite-URL: /admin", b"X-Client-IP: 127.0.0.1",
                b"True-Client-IP: 127.0.0.1", b"X-Forwarded-Host: 10.0.0.1",
                b"X-Forwarded-For: 127.0.0.1", b"Forwarded: for=127.0.0.1", b"Via: 1.1 evil",
                b"X-Real-IP: 127.0.0.1", b"X-HTTP-Method-Override: DELETE",
                b"X-Original-Host: 10.0.0.1", b"X-Kept: yes", b"Connection: close"]
        answer = await relay.raw(sid, _head(relay, sid, cookie, b"/?q=%2F..%2F", *sent))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    request, _ = seen.requests[0]
    names = {bytes(name).lower() for name, _ in request.headers}
    assert b"x-kept" in names
    for line in sent[:-2]:
        assert line.split(b":")[0].lower() not in names
    assert request.target == b"/?q=%2F..%2F"  # the query is data: forwarded as sent


# -- item 4: redirects, Refresh, Link and <meta> refresh in browser spellings ------------------

INTERNAL = ["http://0x0a.0.0.7/", "http://10.0.7/", "http://012.0.0.7/", "http://10.0.0.7./",
            "http://localhost./", "http://printer.localhost/", "http:10.0.0.7/x",
            "/\\10.0.0.7/", "http://167772167/", "https://s-bbbbbbbbbbbbbbbb.rt.localhost/"]


async def test_redirects_to_browser_spelled_internal_hosts_get_the_refusal_page(
        tmp_path: Path, portal: FakePortal) -> None:
    routes: dict[str, Any] = {}
    for n, url in enumerate(INTERNAL):
        routes[f"/loc{n}"] = lambda r, b, u=url: (302, [("Location", u)], b"")
        routes[f"/ref{n}"] = lambda r, b, u=url: (200, [("Refresh", f"0; url={u}")], b"")
        routes[f"/link{n}"] = lambda r, b, u=url: (200, [("Link", f"<{u}>; rel=preconnect")], b"")
    routes["/fine"] = lambda r, b: (302, [("Location", "/login"), ("Refresh", "5; url=/x"),
                                          ("Link", "</a.css>; rel=preload")], b"")
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        for n, url in enumerate(INTERNAL):
            for kind in ("loc", "ref", "link"):
                r = await relay.fetch(sid, "GET", f"/{kind}{n}", cookie=cookie)
                assert r.status == 502, (kind, url, r.status)
                assert b"internal address" in r.body
                assert r.header("location") is None and r.header("refresh") is None
        r = await relay.fetch(sid, "GET", "/fine", cookie=cookie)
        assert r.status == 302 and r.header("location") == "/login"
    details = {e["detail"] for e in _entries(tmp_path) if e["outcome"] == "refused"}
    assert details == {"redirect_to_internal_host", "refresh_to_internal_host",
                       "link_to_internal_host"}


async def test_meta_refresh_to_internal_hosts_points_at_the_refusal_page(
        tmp_path: Path, portal: FakePortal) -> None:
    page = ("<html><head>" + "".join(
        f"<meta http-equiv=refresh content='0;url={u}'>" for u in INTERNAL[:5])
        + '<meta http-equiv="refresh" content="9;url=/status"></head>'
        + "x" * 70_000 + "<META CONTENT='1; URL=http://0x7f.1/' HTTP-EQUIV='Refresh'></html>")
    routes = {"/": lambda r, b: (200, [("Content-Type", "text/html")], page.encode())}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.status == 200
        refused = f'content="0;url={REFUSED_PATH}"'.encode()
        assert r.body.count(refused) == 5
        assert f'content="1;url={REFUSED_PATH}"'.encode() in r.body
        assert b'content="9;url=/status"' in r.body
        for url in INTERNAL[:5]:
            assert url.encode() not in r.body
        shown = await relay.fetch(sid, "GET", REFUSED_PATH, cookie=cookie)
        assert shown.status == 403 and b"redirect was stopped" in shown.body


async def test_markup_in_a_coding_the_relay_cannot_read_is_refused(
        tmp_path: Path, portal: FakePortal) -> None:
    routes = {"/br": lambda r, b: (200, [("Content-Type", "text/html"),
                                         ("Content-Encoding", "br")], b"\x1b\x00junk"),
              "/xml": lambda r, b: (200, [("Content-Type", "application/xml")],
                                    b'<html xmlns="http://www.w3.org/1999/xhtml"><meta '
                                    b'http-equiv="refresh" content="0;url=http://10.0.7/"/>'
                                    b"</html>"),
              "/bin": lambda r, b: (200, [("Content-Type", "application/octet-stream"),
                                          ("Content-Encoding", "br")], b"\x1b\x00junk")}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        r = await relay.fetch(sid, "GET", "/br", cookie=cookie)
        assert r.status == 502 and b"cannot read" in r.body
        r = await relay.fetch(sid, "GET", "/xml", cookie=cookie)
        assert r.status == 200 and f"url={REFUSED_PATH}".encode() in r.body
        assert b"10.0.7" not in r.body
        r = await relay.fetch(sid, "GET", "/bin", cookie=cookie)  # not markup: passes as sent
        assert r.status == 200 and r.body == b"\x1b\x00junk"


# -- item 5: cross-site navigation -----------------------------------------------------------

NAVIGATE = [("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "document")]


async def test_cross_site_navigation_lands_only_on_the_start_page(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok, "/reboot.cgi": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        for site in ("cross-site", "same-site"):
            for target in ("/?reboot=1", "/reboot.cgi"):
                r = await relay.fetch(sid, "GET", target, cookie=cookie,
                                      headers=[("Sec-Fetch-Site", site), *NAVIGATE])
                assert r.status == 403, (site, target)
                assert b"may open only the device&#x27;s start page" in r.body
                assert f'href="{target}"'.encode() in r.body  # the technician may go on
        assert not seen.requests
        r = await relay.fetch(sid, "GET", "/", cookie=cookie,
                              headers=[("Sec-Fetch-Site", "cross-site"), *NAVIGATE])
        assert r.status == 200
        r = await relay.fetch(sid, "GET", "/reboot.cgi", cookie=cookie,
                              headers=[("Sec-Fetch-Site", "same-origin"), *NAVIGATE])
        assert r.status == 200
        assert [req.target for req, _ in seen.requests] == [b"/", b"/reboot.cgi"]
    refused = [e for e in _entries(tmp_path) if e["detail"] == "cross_site_navigation"]
    assert len(refused) == 4 and all(e["outcome"] == "refused" for e in refused)


async def test_another_site_cannot_start_a_sign_in_that_returns_to_a_deep_path(
        tmp_path: Path, portal: FakePortal) -> None:
    """Without the cookie (signed out, another browser profile) a navigation from elsewhere to
    ``/reboot.cgi`` would otherwise go round the portal and come back to it."""
    seen = Seen()
    async with RawServer(device_app({"/": _ok, "/reboot.cgi": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        r = await relay.fetch(sid, "GET", "/reboot.cgi?now=1",
                              headers=[("Sec-Fetch-Site", "cross-site"), *NAVIGATE])
        assert r.status == 403 and b"cross_site_navigation" in r.body
        assert r.header("location") is None  # no sign-in was started
        r = await relay.fetch(sid, "GET", "/", headers=[("Sec-Fetch-Site", "cross-site"),
                                                        *NAVIGATE])
        assert r.status == 302  # the start page signs in as before
        assert not seen.requests


async def test_a_chain_from_another_site_follows_the_devices_and_the_relays_redirects(
        tmp_path: Path, portal: FakePortal) -> None:
    """The portal's link lands on ``/``; the device's redirect from there (and the relay's
    own after sign-in) arrive marked cross-site too, and must still land."""
    clock = ManualClock(start=__import__("time").time())
    seen = Seen()
    routes = {"/": lambda r, b: (302, [("Location", "http://10.0.0.5/app/index.html")], b""),
              "/app/index.html": _ok, "/deep": _ok, "/other": _ok}
    cross = [("Sec-Fetch-Site", "cross-site"), *NAVIGATE]
    async with RawServer(device_app(routes, seen)) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port)
        # signing in for a deep page typed in the address bar: back through the portal
        start = await relay.fetch(sid, "GET", "/deep", headers=[("Sec-Fetch-Site", "none")])
        assert start.status == 302
        callback = portal.authorize(start.header("location") or "")
        path = callback.split(f"{DOMAIN}:{relay.port}", 1)[1]
        done = await relay.fetch(sid, "GET", path, headers=cross,
                                 cookie=(start.header("set-cookie") or "").split(";", 1)[0])
        assert done.status == 303 and done.header("location") == "/deep"
        cookie = (done.header("set-cookie") or "").split(";", 1)[0]
        assert (await relay.fetch(sid, "GET", "/deep", cookie=cookie, headers=cross)).status \
            == 200
        r = await relay.fetch(sid, "GET", "/", cookie=cookie, headers=cross)
        assert r.status == 302
        assert r.header("location") == f"https://{relay.host(sid)}/app/index.html"
        r = await relay.fetch(sid, "GET", "/app/index.html", cookie=cookie, headers=cross)
        assert r.status == 200
        assert (await relay.fetch(sid, "GET", "/other", cookie=cookie, headers=cross)).status \
            == 403
        clock.advance(31)
        r = await relay.fetch(sid, "GET", "/app/index.html", cookie=cookie, headers=cross)
        assert r.status == 403
    assert [req.target for req, _ in seen.requests] == [b"/deep", b"/", b"/app/index.html"]


# -- item 6: the log --------------------------------------------------------------------------

async def test_log_redacts_secrets_marks_long_urls_and_escapes(
        tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(device_app({"/login": _ok, "/big": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, max_header_bytes=64 * 1024) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        await relay.fetch(sid, "GET", "/login?user=a&password=hunter2&access_token=T&x=1",
                          cookie=cookie)
        big = "/big?q=" + "x" * 30_000
        await relay.fetch(sid, "GET", big, cookie=cookie)
    entries = _entries(tmp_path)
    urls = [e["url"] for e in entries]
    assert "/login?user=a&password=\u2026&access_token=\u2026&x=1" in urls
    assert not any("hunter2" in u for u in urls)
    long_url = next(u for u in urls if u.startswith("/big"))
    kept, _, marker = long_url.rpartition("\u2026[+")
    assert marker == f"{len(big) - len(kept)} bytes]" and len(long_url) <= 2048


async def _raw_with_sni(relay: Relay, sid: str, data: bytes) -> bytes:
    reader, writer = await relay.connect(sid)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            out += chunk
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    writer.close()
    return out


async def test_refusals_before_parsing_are_logged_with_the_client(
        tmp_path: Path, portal: FakePortal) -> None:
    async with Relay(tmp_path, portal, max_header_bytes=2048) as relay:
        sid = relay.add_device(9)
        bad = await _raw_with_sni(relay, sid, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
        big = await _raw_with_sni(relay, sid, b"GET / HTTP/1.1\r\nHost: " + relay.host(
            sid).encode() + b"\r\nX-Pad: " + b"p" * 4000 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431 ")
        # after parsing: a refused header name; the entry names the client in its own field
        cookie = await relay.login(sid)
        after = await relay.fetch(sid, "GET", "/", cookie=cookie, headers=[("X_Note", "1")])
        assert after.status == 400
    entries = _entries(tmp_path)
    assert [(e["session_id"], e["status"], e["outcome"]) for e in entries
            if e["outcome"] == "refused"] == [
        (sid, 400, "refused"), (sid, 431, "refused"), (sid, 400, "refused")]
    before, parsed = entries[:2], [e for e in entries[2:] if e["outcome"] == "refused"]
    assert all("client 127.0.0.1" in e["detail"] for e in before)
    assert all(e["client"] == "127.0.0.1" for e in before + parsed)
    assert parsed[0]["detail"].startswith("header_name_underscore")


# -- item 7: sign-out, Clear-Site-Data, HSTS, sign-in limits ----------------------------------

async def test_logout_ends_the_browsers_hold_and_clears_site_data(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        # a kept-alive connection that has already shown the cookie
        reader, writer = await relay.connect(sid)
        writer.write(_head(relay, sid, cookie, b"/"))
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)  # chunked
        assert first.startswith(b"HTTP/1.1 200 ")
        refused = await relay.fetch(sid, "GET", "/.ewsgate/logout", cookie=cookie,
                                    headers=[("Sec-Fetch-Site", "cross-site"), *NAVIGATE])
        assert refused.status == 403
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        out = await relay.fetch(sid, "GET", "/.ewsgate/logout", cookie=cookie + "; Auth=1",
                                headers=[("Sec-Fetch-Site", "same-origin")])
        assert out.status == 200 and b"Signed out" in out.body
        assert out.header("clear-site-data") == '"cache", "storage"'
        expired = out.all("set-cookie")
        assert any(c.startswith("__Host-ewsgate_rt=;") and "Max-Age=0" in c for c in expired)
        assert any(c.startswith("Auth=;") for c in expired)
        # the old cookie no longer works, on a new connection or the kept-alive one
        again = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert again.status == 302 and "/oauth/authorize" in (again.header("location") or "")
        writer.write(_head(relay, sid, cookie, b"/"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 302 ")
        writer.close()
        assert len(seen.requests) == 2
        # signing in again works
        assert (await relay.fetch(sid, "GET", "/", cookie=await relay.login(sid))).status == 200


async def test_the_ended_page_clears_site_data(tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=__import__("time").time())
    async with RawServer(device_app({"/": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, expires_in=600)
        cookie = await relay.login(sid)
        clock.advance(601)
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.status == 410
        assert r.header("clear-site-data") == '"cache", "storage"'
        assert any(c.startswith("__Host-ewsgate_rt=;") for c in r.all("set-cookie"))


async def test_session_origins_send_hsts(tmp_path: Path, portal: FakePortal) -> None:
    routes = {"/": lambda r, b: (200, [("Strict-Transport-Security", "max-age=0")], b"")}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        proxied = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert proxied.all("strict-transport-security") == [HSTS.decode()]
        page = await relay.fetch(sid, "GET", "/x", headers=[("Sec-Fetch-Site", "cross-site")])
        assert page.all("strict-transport-security") == [HSTS.decode()]


async def test_a_sign_in_flood_evicts_nobody(tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=__import__("time").time())  # no token comes back mid-test
    async with RawServer(device_app({"/": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port)
        other = relay.add_device(device.port)
        first = await relay.fetch(sid, "GET", "/")
        assert first.status == 302
        statuses = [(await relay.fetch(sid, "GET", "/")).status for _ in range(16)]
        assert statuses == [302] * 15 + [429]
        limited = [(await relay.fetch(other, "GET", "/")).status for _ in range(5)]
        assert limited == [302] * 4 + [429]  # 20 a minute from one address
        # the technician's sign-in started first still completes
        callback = portal.authorize(first.header("location") or "")
        state_cookie = (first.header("set-cookie") or "").split(";", 1)[0]
        path = callback.split(f"{DOMAIN}:{relay.port}", 1)[1]
        done = await relay.fetch(sid, "GET", path, cookie=state_cookie)
        assert done.status == 303
        clock.advance(3.1)  # 20 a minute: one sign-in back after 3 s
        assert (await relay.fetch(other, "GET", "/")).status == 302
        assert (await relay.fetch(other, "GET", "/")).status == 429
    codes = [e["detail"] for e in _entries(tmp_path) if e["status"] == 429]
    assert codes == ["too_many_pending_sign_ins", "sign_in_rate_limited", "sign_in_rate_limited"]
