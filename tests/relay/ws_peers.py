"""WebSocket peers for the relay's tests: a device that answers upgrades (honestly or not) and a
browser-side client speaking frames over the relay's TLS. Real sockets, wsproto framing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

from ewsgate.relay.ws_handshake import accept_value

from .helpers import Relay, Seen

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@dataclass
class WsDevice:
    """How the device answers an upgrade, and what it saw after its 101."""

    seen: Seen = field(default_factory=Seen)
    #: "ok", "missing" or "wrong" Sec-WebSocket-Accept
    accept: str = "ok"
    upgrade: bytes | None = b"websocket"
    connection: bytes | None = b"Upgrade"
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: bytes sent right after the 101 (as if they were frames)
    after_switch: bytes = b""
    #: echo frames back (wsproto) or only record what arrives
    echo: bool = True
    #: reset the connection (TCP RST) after echoing this many messages
    reset_after: int | None = None
    #: every byte the device received after its 101
    received: bytearray = field(default_factory=bytearray)
    #: the WebSocket events the device parsed from them
    events: list[Any] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request = None
        while request is None or not (conn.their_state is h11.MIGHT_SWITCH_PROTOCOL
                                      or conn.their_state is h11.DONE):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                self.seen.requests.append((event, b""))
        key = dict(request.headers).get(b"sec-websocket-key", b"")
        lines = [b"HTTP/1.1 101 Switching Protocols"]
        if self.upgrade is not None:
            lines.append(b"Upgrade: " + self.upgrade)
        if self.connection is not None:
            lines.append(b"Connection: " + self.connection)
        if self.accept == "ok":
            lines.append(b"Sec-WebSocket-Accept: " + accept_value(key))
        elif self.accept == "wrong":
            lines.append(b"Sec-WebSocket-Accept: " + accept_value(KEY.encode()))
        lines += [name + b": " + value for name, value in self.extra_headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + self.after_switch)
        await writer.drain()
        ws = Connection(ConnectionType.SERVER)
        tail, _ = conn.trailing_data
        try:
            data = tail
            while True:
                if data:
                    self.received += data
                    ws.receive_data(data)
                    for event in ws.events():
                        self.events.append(event)
                        if not self.echo:
                            continue
                        if isinstance(event, TextMessage | BytesMessage):
                            writer.write(ws.send(Message(data=event.data,
                                                         message_finished=event.message_finished)))
                        elif isinstance(event, Ping) or (isinstance(event, CloseConnection) and (
                                ws.state is ConnectionState.REMOTE_CLOSING)):
                            writer.write(ws.send(event.response()))
                    await writer.drain()
                    echoed = sum(1 for e in self.events
                                 if isinstance(e, TextMessage | BytesMessage))
                    if self.reset_after is not None and echoed >= self.reset_after:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        writer.transport.abort()  # a reset, mid-stream
                        return
                data = await reader.read(65536)
                if not data:
                    return
        finally:
            self.closed.set()

    def close_codes(self) -> list[int]:
        return [int(e.code) for e in self.events if isinstance(e, CloseConnection)]


def upgrade_request(relay: Relay, sid: str, cookie: str, *, path: str = "/panel",
                    extra: list[str] | None = None, version: str | None = "13",
                    key: str | None = KEY, method: str = "GET", http: str = "1.1",
                    origin: str | None = "") -> bytes:
    lines = [f"{method} {path} HTTP/{http}", f"Host: {relay.host(sid)}", f"Cookie: {cookie}",
             "Upgrade: websocket", "Connection: Upgrade"]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if origin is not None:
        lines.append(f"Origin: {origin or 'https://' + relay.host(sid)}")
    lines += extra or []
    return ("\r\n".join([*lines, "", ""])).encode()


class WsClient:
    """The browser's end: the handshake over the relay's TLS, then wsproto frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = Connection(ConnectionType.CLIENT)
        self.head = b""
        self.events: list[Any] = []

    @classmethod
    async def open(cls, relay: Relay, sid: str, request: bytes) -> WsClient:
        reader, writer = await relay.connect(sid)
        client = cls(reader, writer)
        writer.write(request)
        await writer.drain()
        client.head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return client

    def header_names(self) -> list[bytes]:
        return [line.split(b":", 1)[0].strip().lower()
                for line in self.head.split(b"\r\n")[1:] if b":" in line]

    async def send(self, event: Any) -> None:
        self.writer.write(self.ws.send(event))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next_event(self, timeout: float = 10) -> Any:
        """The next WebSocket event (CloseConnection 1006 if the relay hung up without a
        close); None once the connection ended after a complete close handshake."""
        while True:
            for event in self.ws.events():
                self.events.append(event)
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except (ConnectionError, OSError):
                data = b""
            if self.ws.state is ConnectionState.CLOSED:
                if not data:
                    return None
                continue
            self.ws.receive_data(data or None)

    async def until_eof(self, timeout: float = 10) -> bytes:
        """Everything the relay still sends until it closes the connection."""
        out = bytearray()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            while chunk := await asyncio.wait_for(self.reader.read(65536), timeout):
                out += chunk
        return bytes(out)

    def close(self) -> None:
        self.writer.close()
