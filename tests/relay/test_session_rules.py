"""Cross-site refusals, WebSocket origin checks and the session's end on the relay's clock."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from wsproto.events import CloseConnection, Message, TextMessage

from ewsgate.relay.clock import ManualClock
from ewsgate.relay.http_proxy import ProxyConfig

from .helpers import FakePortal, RawServer, Relay, Seen, device_app, spool_entries
from .ws_peers import WsClient, WsDevice

pytestmark = pytest.mark.integration


def _ok(request, body):
    return 200, [("Content-Type", "text/plain")], b"done"


@pytest.mark.parametrize("headers,status", [
    ([("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "navigate"),
      ("Sec-Fetch-Dest", "document"), ("Origin", "https://evil.example")], 403),
    ([("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "cors"),
      ("Origin", "https://s-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.rt.localhost")], 403),
    ([("Origin", "https://evil.example")], 403),
    ([("Origin", "null")], 403),
    ([("Sec-Fetch-Site", "same-origin")], 200),
    ([], 200),
])
async def test_cross_site_post_is_refused(tmp_path: Path, portal: FakePortal,
                                          headers: list[tuple[str, str]], status: int) -> None:
    seen = Seen()
    async with RawServer(device_app({"/settings": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        response = await relay.fetch(sid, "POST", "/settings", body=b"toner=0", cookie=cookie,
                                     headers=headers)
        assert response.status == status
        if status == 403:
            assert not seen.requests
            assert b"refused" in response.body
            assert response.header("content-security-policy")


async def test_other_sessions_cannot_load_subresources(tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/reset": _ok, "/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        # <img src="https://s-<this>/reset"> on another session's page: same-site, no-cors
        r = await relay.fetch(sid, "GET", "/reset", cookie=cookie, headers=[
            ("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "no-cors"),
            ("Sec-Fetch-Dest", "image")])
        assert r.status == 403 and not seen.requests
        # a link from the portal (top-level navigation to the start page, the only page the
        # portal links to) is fine
        r = await relay.fetch(sid, "GET", "/", cookie=cookie, headers=[
            ("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document")])
        assert r.status == 200
        # ... and a navigation from another site to a deeper path gets the explaining page
        # (issue 10, item 5: test_cross_site_navigation.py has the rest)
        r = await relay.fetch(sid, "GET", "/reset", cookie=cookie, headers=[
            ("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document")])
        assert r.status == 403 and b"cross_site_navigation" in r.body
        assert [req.target for req, _ in seen.requests] == [b"/"]
        # service worker scripts are refused outright
        r = await relay.fetch(sid, "GET", "/sw.js", cookie=cookie, headers=[
            ("Sec-Fetch-Site", "same-origin"), ("Service-Worker", "script"),
            ("Sec-Fetch-Dest", "serviceworker")])
        assert r.status == 403


def _ws_device(seen: Seen):
    """A device that upgrades /panel to a WebSocket echo (frames, as RFC 6455 says)."""
    return WsDevice(seen=seen).handler


def _upgrade(relay: Relay, sid: str, cookie: str, origin: str | None) -> bytes:
    lines = [
        "GET /panel HTTP/1.1", f"Host: {relay.host(sid)}", f"Cookie: {cookie}",
        "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join([*lines, "", ""])).encode()


@pytest.mark.parametrize("origin", [None, "https://evil.example", "http://10.0.0.5"])
async def test_websocket_from_another_origin_is_refused(
        tmp_path: Path, portal: FakePortal, origin: str | None) -> None:
    seen = Seen()
    async with RawServer(_ws_device(seen)) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        answer = await relay.raw(sid, _upgrade(relay, sid, cookie, origin))
        assert answer.startswith(b"HTTP/1.1 403")
        assert not seen.requests


async def test_websocket_passes_through_and_closes_at_expiry(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    clock = ManualClock(start=__import__("time").time())
    async with RawServer(_ws_device(seen)) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, expires_in=600)
        cookie = await relay.login(sid)
        reader, writer = await relay.connect(sid)
        writer.write(_upgrade(relay, sid, cookie, f"https://{relay.host(sid)}"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        request, _ = seen.requests[-1]
        assert dict(request.headers)[b"origin"] == b"http://10.0.0.5"
        # frames, parsed by the relay on both sides: a masked text frame echoed by the device
        client = WsClient(reader, writer)
        await client.send(Message(data="hello"))
        echoed = await client.next_event()
        assert isinstance(echoed, TextMessage) and echoed.data == "hello"
        clock.advance(601)  # the session's end, on the relay's clock
        close = await client.next_event()  # closed with 1008 (policy), not cut (1006)
        assert isinstance(close, CloseConnection) and close.code == 1008
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
        after = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert after.status == 410
        assert ("This Remote Technician session has ended — start a new one from the portal"
                .encode()) \
            in after.body
        assert portal.url.encode() in after.body


async def test_in_flight_response_ends_at_expiry(tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=__import__("time").time())
    started = asyncio.Event()

    async def endless(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        started.set()
        with contextlib.suppress(ConnectionError):
            for _ in range(2000):
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.005)

    async with RawServer(endless) as device, Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, expires_in=60)
        cookie = await relay.login(sid)
        reader, writer = await relay.connect(sid)
        writer.write(f"GET /log HTTP/1.1\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n\r\n"
                     .encode())
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(100), 5)).startswith(b"HTTP/1.1 200")
        clock.advance(61)
        total = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                total += len(chunk)
        assert total < 2000 * 1024  # cut off, not streamed to the end
        writer.close()
        entries: list[dict[str, Any]] = []
        for _ in range(100):  # the relay logs as it tears the connection down
            entries = [e for e in spool_entries(tmp_path / "spool")
                       if e["url"] == "/log" and e["outcome"] != "pending"]
            if entries:
                break
            await asyncio.sleep(0.05)
        entry = entries[0]
        assert entry["outcome"] == "ended" and entry["status"] == 200


async def test_new_requests_after_expiry_get_the_ended_page(
        tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=__import__("time").time())
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, expires_in=1800)
        cookie = await relay.login(sid)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        clock.advance(1799)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        clock.advance(1)
        count = len(seen.requests)
        for method in ("GET", "POST"):
            r = await relay.fetch(sid, method, "/", cookie=cookie)
            assert r.status == 410 and b"has ended" in r.body
        assert len(seen.requests) == count


async def test_ticket_longer_than_30_minutes_is_capped(tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=__import__("time").time())
    async with RawServer(device_app({"/": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(device.port, expires_in=4 * 3600)
        cookie = await relay.login(sid)
        clock.advance(30 * 60)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 410


def test_a_maximum_above_30_minutes_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="at most 1800"):
        ProxyConfig(domain="rt.localhost", portal_url="https://p", max_session_seconds=1801)
    assert ProxyConfig(domain="rt.localhost", portal_url="https://p",
                       max_session_seconds=60).max_session_seconds == 60
