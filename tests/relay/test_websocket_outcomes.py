"""A WebSocket's log entry says what happened to it: a device that resets mid-stream (directly
or through the tunnel, where the agent resets the stream) is an ``error`` with its cause, a
browser that vanishes is ``client_gone``, a session that ends under it says close 1008. Raw TLS
to the relay, raw TCP devices on 127.0.0.1 (:mod:`.ws_peers`), the real tunnel."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from wsproto.events import CloseConnection, Message, TextMessage

from ewsgate.relay.clock import ManualClock

from .helpers import FakePortal, RawServer, Relay, new_session_id, spool_entries
from .test_through_tunnel import _tunnel
from .ws_peers import WsClient, WsDevice, upgrade_request

pytestmark = pytest.mark.integration


async def _entry(relay: Relay, url: str) -> dict[str, Any]:
    for _ in range(200):  # the connection logs as it tears down, just after the last byte
        done = [e for e in spool_entries(relay.spool) if e.get("url") == url
                and e["outcome"] != "pending"]
        if done:
            assert len(done) == 1, done  # one entry per WebSocket
            return done[0]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no completed entry for {url}: {spool_entries(relay.spool)}")


async def _talk_until_the_device_resets(client: WsClient) -> Any:
    """One message echoed, the second one makes the device reset: what the browser gets."""
    await client.send(Message(data="first"))
    echoed = await client.next_event()
    assert isinstance(echoed, TextMessage) and echoed.data == "first"
    await client.send(Message(data="second"))
    event = await client.next_event()
    while isinstance(event, TextMessage):
        event = await client.next_event()
    return event


async def test_a_device_that_resets_mid_websocket_is_an_error_with_its_cause(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice(reset_after=2)
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            close = await _talk_until_the_device_resets(client)
        finally:
            client.close()
        entry = await _entry(relay, "/panel")
    # the browser is told the device went away (1001), not left with a dead socket
    assert isinstance(close, CloseConnection) and close.code == 1001
    assert entry["status"] == 101 and entry["outcome"] == "error", entry
    assert entry["detail"].startswith("device_reset: websocket: close 1006 by the device")
    assert "the device's connection failed mid-stream: ConnectionResetError" in entry["detail"]
    assert entry["bytes_in"] == len("firstsecond")


async def test_a_tunnel_stream_reset_during_a_websocket_is_an_error_with_its_cause(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice(reset_after=2)
    async with RawServer(device.handler) as server:
        sid = new_session_id()
        target = SimpleNamespace(http=SimpleNamespace(port=server.port),
                                 config=SimpleNamespace(hostname=None))
        registry, tunnel, agent = await _tunnel(tmp_path, target, sid)
        try:
            async with Relay(tmp_path, portal, directory=registry) as relay:
                cookie = await relay.login(sid)
                client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
                try:
                    # the device resets the agent's connection; the agent resets the stream
                    close = await _talk_until_the_device_resets(client)
                finally:
                    client.close()
                entry = await _entry(relay, "/panel")
        finally:
            await agent.close()
            await tunnel.close()
    assert isinstance(close, CloseConnection) and close.code == 1001
    assert entry["status"] == 101 and entry["outcome"] == "error", entry
    assert entry["detail"].startswith("device_reset: websocket: close 1006 by the device")
    assert "the device's connection failed mid-stream: " in entry["detail"]
    assert "ended the connection without a WebSocket close" not in entry["detail"], entry


async def test_a_browser_that_vanishes_mid_websocket_is_client_gone(
        tmp_path: Path, portal: FakePortal) -> None:
    device = WsDevice()
    async with RawServer(device.handler) as server, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(server.port)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        await client.send(Message(data="hi"))
        assert (await client.next_event()).data == "hi"
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()
        await asyncio.wait_for(device.closed.wait(), 10)
        entry = await _entry(relay, "/panel")
    assert device.close_codes() == [1001]  # the device is told the browser went away
    assert entry["outcome"] == "client_gone", entry
    assert "close 1006 by the browser" in entry["detail"]
    assert "the browser's connection failed mid-stream" in entry["detail"]


async def test_a_websocket_cut_at_expiry_after_its_grace_still_says_close_1008(
        tmp_path: Path, portal: FakePortal) -> None:
    clock = ManualClock(start=time.time())
    device = WsDevice()
    async with RawServer(device.handler) as server, \
            Relay(tmp_path, portal, clock=clock, websocket_close_grace=0.3) as relay:
        sid = relay.add_device(server.port, expires_in=600)
        cookie = await relay.login(sid)
        client = await WsClient.open(relay, sid, upgrade_request(relay, sid, cookie))
        try:
            await client.send(Message(data="before"))
            assert (await client.next_event()).data == "before"
            clock.advance(601)
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1008
            # this browser never answers: the relay cuts it after the grace
            assert await client.until_eof() == b""
        finally:
            client.close()
        entry = await _entry(relay, "/panel")
    assert entry["outcome"] == "ended", entry
    assert "close 1008 by the relay" in entry["detail"]
