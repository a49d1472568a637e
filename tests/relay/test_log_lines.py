"""The relay's own log lines (what operators read on stderr) never carry a peer's control
characters: a hostile device and a hostile browser send ANSI escapes, C1 controls and line
breaks (ESC, CSI as U+009B, NEL, U+2028, CR LF) wherever the protocol lets them through, and
every line the relay logs about it is printable and capped. Real TLS to the relay, raw TCP
devices on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from wsproto.events import Message

from ewsgate.aio.errors import StreamResetError
from ewsgate.relay.ws_proxy import WebSocketProxy
from ewsgate.tunnel import ErrorCode

from .helpers import FakePortal, RawServer, Relay, read_request

pytestmark = pytest.mark.integration

#: a screen clear, a window title, C1 CSI and NEL, a line separator and a forged line
HOSTILE = "\x1b[2J\x1b]0;owned\x07\u009b2J\u0085\u2028\r\nERROR forged log line"
HOSTILE_BYTES = HOSTILE.encode("utf-8")


def _printable(message: str) -> bool:
    return all(char == " " or char.isprintable() for char in message)


async def _hostile_device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers by path with what h11 lets a device send: 8-bit bytes (C1 controls and U+2028
    in UTF-8) in header values and in a 101's headers, and a 101 nobody asked for."""
    import h11

    request, _ = await read_request(reader, h11.Connection(h11.SERVER))
    if request is None:
        return
    eight_bit = "\u009b2J\u0085\u2028".encode()
    if request.target.startswith(b"/redirect"):
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.9/" + eight_bit +
                     b"\r\nContent-Length: 0\r\n\r\n")
    elif request.target.startswith(b"/switch"):
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + eight_bit +
                     b"\r\nSec-WebSocket-Protocol: " + eight_bit + b"\r\n\r\n" + HOSTILE_BYTES)
    else:  # a 101 to a request that asked for no upgrade, then junk
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + eight_bit +
                     b"\r\n\r\n" + HOSTILE_BYTES)
    await writer.drain()
    writer.close()


async def test_hostile_text_reaches_the_relays_log_escaped(
        tmp_path: Path, portal: FakePortal, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ewsgate")
    async with RawServer(_hostile_device) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        host = relay.host(sid)
        await relay.fetch(sid, "GET", "/redirect", cookie=cookie)
        await relay.raw(sid, (f"GET /switch HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
                              f"Origin: https://{host}\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode(),
                        read_timeout=2)
        await relay.fetch(sid, "GET", "/plain", cookie=cookie)
        # the browser's side: 8-bit bytes in a header value and in a header name, a target
        # with them, and bytes that are no HTTP at all
        for head in (b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Note: " +
                     HOSTILE_BYTES.replace(b"\r\n", b"") + b"\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX_" +
                     HOSTILE_BYTES.replace(b"\r\n", b"") + b": 1\r\n\r\n",
                     b"GET /" + HOSTILE_BYTES + b" HTTP/1.1\r\nHost: nowhere\r\n\r\n",
                     HOSTILE_BYTES + b"\r\n\r\n"):
            await relay.raw(sid, head, read_timeout=2)
    messages = [record.getMessage() for record in caplog.records
                if record.name.startswith("ewsgate")]
    refusals = [m for m in messages if m.startswith("refused")]
    assert len(refusals) >= 3, messages  # the redirect, the bad switch, the 400s
    for message in messages:
        assert _printable(message), repr(message)
        assert len(message) < 2000, message[:200]
    assert not any("ERROR forged" in m and "\n" in m for m in messages)


class _ResetStream:
    """A device stream whose read fails the way a reset tunnel stream does, with the reset's
    reason chosen by a hostile agent (ANSI escapes, a forged line)."""

    def __init__(self) -> None:
        self.written = bytearray()

    async def read(self, max_bytes: int) -> bytes:
        await asyncio.sleep(0)
        raise StreamResetError(HOSTILE * 20, ErrorCode.CANCEL)

    async def write(self, data: bytes) -> None:
        self.written += data

    async def write_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_websocket_failure_cause_is_escaped_and_capped() -> None:
    from wsproto.connection import Connection, ConnectionType

    browser = Connection(ConnectionType.CLIENT)
    sent: list[bytes] = []
    incoming = asyncio.Queue[bytes]()
    incoming.put_nowait(browser.send(Message(data="hi")))

    async def read_browser(size: int) -> bytes:
        return await incoming.get()

    async def write_browser(data: bytes) -> None:
        sent.append(data)
        incoming.put_nowait(b"")  # the browser leaves once it got the close

    proxy = WebSocketProxy(read_browser=read_browser, write_browser=write_browser,
                           device=_ResetStream(), read_size=65536, grace=0.5)
    stats: Any = await asyncio.wait_for(proxy.run(b"", b""), 10)
    assert stats.vanished == "device"
    assert stats.cause.startswith("StreamResetError: ")
    assert _printable(stats.cause) and "\x1b" not in stats.cause and "\n" not in stats.cause
    assert len(stats.cause) <= 200 and "more]" in stats.cause
    assert _printable(stats.summary())
