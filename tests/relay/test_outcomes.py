"""Every outcome is what happened: device resets, an agent that goes away, a browser that
leaves, a relay bug; through the real tunnel (relay listener and registry, the agent's tunnel
client and dialer) to real TCP devices on 127.0.0.1 that misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h11
import pytest

from ewsgate.relay.rewrite import LanRewriter

from .helpers import FakePortal, RawServer, Relay, new_session_id, read_request, spool_entries
from .test_through_tunnel import _tunnel

pytestmark = pytest.mark.integration


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a device that resets does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _device(port: int) -> Any:
    return SimpleNamespace(http=SimpleNamespace(port=port), config=SimpleNamespace(hostname=None))


async def _entry(relay: Relay, url: str) -> dict[str, Any]:
    for _ in range(200):
        done = [e for e in spool_entries(relay.spool) if e["url"] == url and
                e["outcome"] != "pending"]
        if done:
            return done[0]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no completed entry for {url}: {spool_entries(relay.spool)}")


async def _read_all(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """Everything the relay sent, and how the connection ended: ``eof`` or ``reset``."""
    data = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            data += chunk
    except (ConnectionError, ssl.SSLError, OSError):
        return bytes(data), "reset"
    return bytes(data), "eof"


async def _get_raw(relay: Relay, sid: str, path: str, cookie: str) -> tuple[bytes, str]:
    reader, writer = await relay.connect(sid)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n\r\n"
                 .encode())
    await writer.drain()
    try:
        return await _read_all(reader)
    finally:
        writer.close()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.WARNING)
    yield caplog
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("ewsgate.relay")
                and "unexpectedly" not in r.getMessage()], "an exception escaped"
    assert "Task exception was never retrieved" not in caplog.text


async def _misbehaving(kind: str) -> RawServer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request, _ = await read_request(reader, conn)
        if request is None:
            return
        if kind == "reset_before_head":
            _reset(writer)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 10000000\r\n\r\n" + b"x" * 50_000)
        await writer.drain()
        if kind == "reset_mid_body":
            await asyncio.sleep(0.1)
            _reset(writer)
            return
        # "stream": keep sending slowly until the other side goes away
        with contextlib.suppress(ConnectionError):
            for _ in range(400):
                writer.write(b"y" * 16_384)
                await writer.drain()
                await asyncio.sleep(0.01)

    return RawServer(handler)


async def test_a_device_reset_before_the_head_is_a_502_page_and_an_error_entry(
        tmp_path: Path, portal: FakePortal, no_tracebacks: Any) -> None:
    async with await _misbehaving("reset_before_head") as device:
        sid = new_session_id()
        registry, server, client = await _tunnel(tmp_path, _device(device.port), sid)
        try:
            async with Relay(tmp_path, portal, directory=registry) as relay:
                cookie = await relay.login(sid)
                page = await relay.fetch(sid, "GET", "/reset", cookie=cookie)
                assert page.status == 502
                assert b"The connection to the device failed" in page.body
                entry = await _entry(relay, "/reset")
        finally:
            await client.close()
            await server.close()
    assert entry["status"] == 502 and entry["outcome"] == "error"
    assert entry["detail"].startswith("device_reset")


async def test_a_device_reset_mid_body_aborts_the_browser_connection(
        tmp_path: Path, portal: FakePortal, no_tracebacks: Any) -> None:
    async with await _misbehaving("reset_mid_body") as device:
        sid = new_session_id()
        registry, server, client = await _tunnel(tmp_path, _device(device.port), sid)
        try:
            async with Relay(tmp_path, portal, directory=registry) as relay:
                cookie = await relay.login(sid)
                data, ended = await _get_raw(relay, sid, "/big", cookie)
                entry = await _entry(relay, "/big")
        finally:
            await client.close()
            await server.close()
    assert data.startswith(b"HTTP/1.1 200") and len(data) < 10_000_000
    assert ended == "reset"  # not a clean close that could pass for the end
    assert entry["outcome"] == "error" and entry["status"] == 200
    assert entry["detail"].startswith("device_body_incomplete")
    assert 0 < entry["bytes_out"] < 10_000_000


async def test_an_agent_gone_mid_download_is_an_error_not_ok(
        tmp_path: Path, portal: FakePortal, no_tracebacks: Any) -> None:
    async with await _misbehaving("stream") as device:
        sid = new_session_id()
        registry, server, client = await _tunnel(tmp_path, _device(device.port), sid)
        try:
            async with Relay(tmp_path, portal, directory=registry) as relay:
                cookie = await relay.login(sid)
                reader, writer = await relay.connect(sid)
                writer.write(f"GET /download HTTP/1.1\r\nHost: {relay.host(sid)}\r\n"
                             f"Cookie: {cookie}\r\n\r\n".encode())
                await writer.drain()
                first = await asyncio.wait_for(reader.read(65536), 10)
                assert first.startswith(b"HTTP/1.1 200")
                await client.close()  # the agent goes away mid-response
                _, ended = await _read_all(reader)
                writer.close()
                entry = await _entry(relay, "/download")
        finally:
            await client.close()
            await server.close()
    assert ended == "reset"
    assert entry["outcome"] == "error" and entry["status"] == 200
    assert entry["detail"].startswith("device_body_incomplete")


async def test_a_browser_that_leaves_is_client_gone(
        tmp_path: Path, portal: FakePortal, no_tracebacks: Any) -> None:
    async with await _misbehaving("stream") as device:
        sid = new_session_id()
        registry, server, client = await _tunnel(tmp_path, _device(device.port), sid)
        try:
            async with Relay(tmp_path, portal, directory=registry) as relay:
                cookie = await relay.login(sid)
                reader, writer = await relay.connect(sid)
                writer.write(f"GET /leave HTTP/1.1\r\nHost: {relay.host(sid)}\r\n"
                             f"Cookie: {cookie}\r\n\r\n".encode())
                await writer.drain()
                assert (await asyncio.wait_for(reader.read(65536), 10)).startswith(b"HTTP/1.1")
                _reset(writer)
                entry = await _entry(relay, "/leave")
        finally:
            await client.close()
            await server.close()
    assert entry["outcome"] == "client_gone" and entry["status"] == 200, entry["detail"]


async def test_an_unexpected_relay_error_is_logged_with_the_session_and_recorded_internal(
        tmp_path: Path, portal: FakePortal, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here: the rewriter raising) must not escape the connection handler."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(reader, conn)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.5/x\r\n"
                     b"Content-Length: 0\r\n\r\n")
        await writer.drain()

    def broken(self: LanRewriter, value: str) -> str:
        raise RuntimeError("a bug in the rewriter")

    monkeypatch.setattr(LanRewriter, "rewrite_location", broken)
    async with RawServer(handler) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        page = await relay.fetch(sid, "GET", "/bug", cookie=cookie)
        entry = await _entry(relay, "/bug")
    assert page.status == 500 and b"The relay failed on this request" in page.body
    assert entry["outcome"] == "error" and entry["detail"] == "internal: RuntimeError"
    logged = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert logged and sid in logged[0].getMessage() and logged[0].exc_info


async def test_a_device_that_never_answers_gets_a_504_after_the_response_timeout(
        tmp_path: Path, portal: FakePortal, no_tracebacks: Any) -> None:
    """``--response-timeout`` bounds the wait for the head (60 s by default; 0.5 s here)."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(reader, conn)
        await asyncio.sleep(30)

    async with RawServer(silent) as device, Relay(tmp_path, portal,
                                                  response_timeout=0.5) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        page = await relay.fetch(sid, "GET", "/slow", cookie=cookie)
        entry = await _entry(relay, "/slow")
    assert page.status == 504 and b"did not answer in time" in page.body
    assert entry["outcome"] == "error" and entry["detail"] == "device_timeout"
    assert entry["status"] == 504
