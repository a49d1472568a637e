"""WebSockets by RFC 6455 through the relay, tried from the browser's and the device's side.

Raw TLS to the relay, a device on 127.0.0.1 that answers upgrades honestly or not
(:mod:`.ws_peers`), frames with wsproto on both ends.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

from ewsgate.relay.clock import ManualClock

from .helpers import FakePortal, RawServer, Relay, spool_entries
from .ws_peers import KEY, WsClient, WsDevice, upgrade_request

pytestmark = pytest.mark.integration


def _entries(tmp_path: Path, url: str) -> list[dict]:
    """The spool's entries for ``url`` as the portal stores them (begin merged with its
    completion)."""
    return [e for e in spool_entries(tmp_path / "spool") if e.get("url") == url]


async def _entry(tmp_path: Path, url: str) -> dict:
    for _ in range(200):  # the connection logs as it tears down, just after the last byte
        found = [e for e in _entries(tmp_path, url) if e["outcome"] != "pending"]
        if found:
            return found[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no log entry for {url}")


@pytest.mark.parametrize("kwargs,status,needle", [
    ({"version": "99", "key": None}, 426, b"version 99"),
    ({"version": None}, 426, b"version missing"),
    ({"key": "c2hvcnQ="}, 400, b"16 random bytes"),
    ({"key": "not base64!!"}, 400, b"16 random bytes"),
    ({"key": None}, 400, b"exactly one"),
    ({"extra": [f"Sec-WebSocket-Key: {KEY}"]}, 400, b"exactly one"),
    ({"method": "POST"}, 400, b"must be a GET"),
    ({"http": "1.0"}, 400, b"HTTP/1.1"),
])
async def test_bad_browser_handshakes_are_refused_before_the_device(
        tmp_path: Path, portal: FakePortal, kwargs: dict, status: int, needle: bytes) -> None:
    device = WsDevice()
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        answer = await relay.raw(sid, upgrade_request(relay, sid, cookie, **kwargs))
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
        assert needle in answer
        if status == 426:
            assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer
        assert not device.seen.requests  # the device never saw the upgrade
        entry = await _entry(tmp_path, "/panel")
        assert entry["status"] == status and entry["outcome"] == "refused"
        assert entry["detail"].startswith("websocket_handshake_refused")


async def test_the_device_gets_the_relays_own_handshake(tmp_path: Path,
                                                         portal: FakePortal) -> None:
    """A fresh key (never the browser's), version 13, the browser's subprotocols, no
    extensions; the browser's 101 is built from the allow-list only."""
    device = WsDevice(extra_headers=[
        (b"Sec-WebSocket-Protocol", b"chat"),
        (b"Set-Cookie", b"__Host-ewsgate_rt=stolen; Path=/; Secure"),
        (b"Set-Cookie", b"panel=1; Domain=rt.localhost"),
        (b"Content-Security-Policy", b"default-src *"), (b"X-Device", b"1")])
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie, extra=[
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]))
        try:
            assert client.head.startswith(b"HTTP/1.1 101 ")
            assert sorted(client.header_names()) == [
                b"connection", b"sec-websocket-accept", b"sec-websocket-protocol", b"upgrade"]
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in client.head
            assert b"Sec-WebSocket-Protocol: chat\r\n" in client.head
            request, _ = device.seen.requests[-1]
            sent = {bytes(n).lower(): bytes(v) for n, v in request.headers}
            assert sent[b"sec-websocket-key"] != KEY.encode()
            assert len(sent[b"sec-websocket-key"]) == 24
            assert sent[b"sec-websocket-version"] == b"13"
            assert sent[b"sec-websocket-protocol"] == b"chat, superchat"
            assert b"sec-websocket-extensions" not in sent
            assert b"__Host-ewsgate_rt" not in sent.get(b"cookie", b"")
            await client.send(Message(data="hello"))
            echoed = await client.next_event()
            assert isinstance(echoed, TextMessage) and echoed.data == "hello"
        finally:
            client.close()


@pytest.mark.parametrize("device_kwargs,why", [
    ({"accept": "missing"}, b"no Sec-WebSocket-Accept"),
    ({"accept": "wrong"}, b"wrong Sec-WebSocket-Accept"),
    ({"upgrade": None}, b"Upgrade: websocket"),
    ({"upgrade": b"h2c"}, b"Upgrade: websocket"),
    ({"connection": b"keep-alive"}, b"Connection: upgrade"),
    ({"extra_headers": [(b"Sec-WebSocket-Extensions", b"permessage-deflate")]},
     b"extension"),
    ({"extra_headers": [(b"Sec-WebSocket-Protocol", b"admin")]}, b"did not offer"),
])
async def test_a_bad_101_from_the_device_gets_502_and_no_splice(
        tmp_path: Path, portal: FakePortal, device_kwargs: dict, why: bytes) -> None:
    """What the device sends after a bad 101 (here an HTTP response and a frame) never
    reaches the browser, and what the browser sends after never reaches the device."""
    device = WsDevice(**device_kwargs, echo=False,
                      after_switch=b"\x81\x05hello" + b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\n\r\n")
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        request = upgrade_request(relay, sid, cookie)
        smuggled = (f"GET /reboot HTTP/1.1\r\nHost: {relay.host(sid)}\r\n"
                    f"Cookie: {cookie}\r\n\r\n").encode()
        answer = await relay.raw(sid, request + smuggled)
        assert answer.startswith(b"HTTP/1.1 502 "), answer[:200]
        assert why in answer
        assert b"hello" not in answer and b"a=1" not in answer
        assert answer.count(b"HTTP/1.1 ") == 1  # and the connection closed after it
        assert b"/reboot" not in bytes(device.received)
        assert [r.target for r, _ in device.seen.requests] == [b"/panel"]
        entry = await _entry(tmp_path, "/panel")
        assert entry["status"] == 502 and entry["outcome"] == "refused"
        assert entry["detail"].startswith("bad_websocket_switch")


async def test_plain_http_after_the_switch_never_reaches_the_device(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice(echo=False)
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            assert client.head.startswith(b"HTTP/1.1 101 ")
            await client.send_raw(f"GET /reboot?now=1 HTTP/1.1\r\nHost: {relay.host(sid)}"
                                  "\r\n\r\n".encode())
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1002
            await asyncio.wait_for(device.closed.wait(), 10)
        finally:
            client.close()
        assert b"reboot" not in bytes(device.received)
        assert device.close_codes() == [1002]  # the device got a close frame, nothing else
        assert all(isinstance(e, CloseConnection) for e in device.events)
        entry = await _entry(tmp_path, "/panel")
        assert entry["status"] == 101 and entry["outcome"] == "error"
        assert "close 1002 by the browser" in entry["detail"]
        assert "broke the WebSocket protocol" in entry["detail"]


async def test_unmasked_browser_frame_and_masked_device_frame_fail_the_websocket(
        tmp_path: Path, portal: FakePortal) -> None:
    # a masked frame from the device (a server must not mask), right after its 101
    masked = bytes([0x81, 0x85, 1, 2, 3, 4]) + bytes(b ^ m for b, m in zip(
        b"hello", b"\x01\x02\x03\x04\x01", strict=True))
    device = WsDevice(after_switch=masked)
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1002
        finally:
            client.close()
        entry = await _entry(tmp_path, "/panel")
        assert "close 1002 by the device" in entry["detail"]

        device2 = WsDevice()
        async with RawServer(device2.handler) as server2:
            sid2 = relay.add_device(server2.port)
            cookie2 = await relay.login(sid2)
            client = await WsClient.open(relay, sid2, upgrade_request(relay, sid2, cookie2))
            try:
                await client.send_raw(b"\x81\x05hello")  # unmasked, from the browser
                close = await client.next_event()
                assert isinstance(close, CloseConnection) and close.code == 1002
                await asyncio.wait_for(device2.closed.wait(), 10)
            finally:
                client.close()
            assert device2.close_codes() == [1002]
            assert not any(isinstance(e, TextMessage) for e in device2.events)


async def test_frames_pass_both_ways_and_the_log_counts_them(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice()
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            await client.send(Message(data="héllo"))
            assert (await client.next_event()).data == "héllo"
            await client.send(Message(data=b"\x00\x01", message_finished=False))
            await client.send(Message(data=b"\x02"))
            parts = [await client.next_event(), await client.next_event()]
            assert all(isinstance(p, BytesMessage) for p in parts)
            assert b"".join(p.data for p in parts) == b"\x00\x01\x02"
            await client.send(Ping(payload=b"p"))
            pong = await client.next_event()
            assert isinstance(pong, Pong) and pong.payload == b"p"
            await client.send(CloseConnection(code=1000, reason="bye"))
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1000
            assert await client.next_event() is None  # then the relay closes the connection
        finally:
            client.close()
        entry = await _entry(tmp_path, "/panel")
        assert entry["status"] == 101 and entry["outcome"] == "ok"
        assert entry["bytes_in"] == len("héllo".encode()) + 3
        assert entry["bytes_out"] == len("héllo".encode()) + 3
        assert "close 1000 by the browser" in entry["detail"]
        assert "messages 2 in, 2 out" in entry["detail"]
        assert len(_entries(tmp_path, "/panel")) == 1  # one entry per WebSocket


async def test_expiry_sends_close_1008_both_ways(tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=time.time())
    device = WsDevice()
    async with RawServer(device.handler) as server, \
            Relay(tmp_path, portal, clock=clock) as relay:
        sid = relay.add_device(server.port, expires_in=600)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            await client.send(Message(data="before"))
            assert (await client.next_event()).data == "before"
            clock.advance(601)
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1008
            await client.send(close.response())
            await asyncio.wait_for(device.closed.wait(), 10)
        finally:
            client.close()
        assert device.close_codes() == [1008]
        entry = await _entry(tmp_path, "/panel")
        assert entry["outcome"] == "ended" and "close 1008 by the relay" in entry["detail"]


async def test_end_session_closes_with_1008_even_if_the_browser_never_answers(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice()
    async with RawServer(device.handler) as server, \
            Relay(tmp_path, portal, websocket_close_grace=0.5) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            await relay.proxy.end_session(sid, "revoked by an administrator")
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1008
            assert close.reason == "revoked by an administrator"
            # no answer from this browser: the relay cuts the connection after the grace
            assert await client.until_eof() == b""
        finally:
            client.close()
        await asyncio.wait_for(device.closed.wait(), 10)
        assert device.close_codes() == [1008]
        after = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert after.status == 410


@pytest.mark.parametrize("route,status", [
    ("/hostile/ws/set-cookie", 101), ("/hostile/ws/no-accept", 502),
    ("/hostile/ws/wrong-accept", 502), ("/hostile/ws/extension", 502),
    ("/hostile/ws/raw", 101),
])
async def test_the_simulators_hostile_websocket_routes_are_held(
        tmp_path: Path, portal: FakePortal, route: str, status: int) -> None:
    """The device-side attack routes the ``hostile`` profile carries, through the relay."""
    from ewsgate.devicesim.ews_server import serve_http
    from ewsgate.devicesim.profiles.hostile_ws import HostileWebSockets
    from ewsgate.devicesim.web import Router

    router, hostile = Router(), HostileWebSockets()
    hostile.register(router)
    server = await serve_http(router.dispatch, "127.0.0.1", 0, scheme="http")
    try:
        async with Relay(tmp_path, portal) as relay:
            sid = relay.add_device(server.port)
            cookie = await relay.login(sid)
            client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie,
                                                                     path=route))
            try:
                assert client.head.startswith(f"HTTP/1.1 {status} ".encode()), client.head
                if status != 101:
                    rest = await client.until_eof()
                    assert b"hello" not in rest and b"after_switch" not in rest
                    assert b"after_switch" not in client.head
                    return
                assert sorted(client.header_names()) == [
                    b"connection", b"sec-websocket-accept", b"upgrade"]
                hello = await client.next_event()
                assert isinstance(hello, TextMessage) and hello.data == "hello"
                await client.send(Message(data="ping me"))
                await client.send_raw(b"GET /reboot HTTP/1.1\r\nHost: x\r\n\r\n")
                close = await client.next_event()
                while isinstance(close, TextMessage):
                    close = await client.next_event()
                assert isinstance(close, CloseConnection) and close.code == 1002
            finally:
                client.close()
        if route == "/hostile/ws/raw":
            for _ in range(100):  # what the device received after its 101: frames only
                if len(hostile.received) >= 2 + 4 + 7 + 6:
                    break
                await asyncio.sleep(0.02)
            assert b"reboot" not in hostile.received and b"HTTP" not in hostile.received
            assert hostile.received[0] == 0x81 and hostile.received[1] & 0x80  # masked text
    finally:
        await server.close()
