"""The relay writes a small response to the browser as one TLS record, not one per h11 event.

Counted on the wire: a raw TCP socket with a TLS 1.2 ``SSLObject`` (TLS 1.2, so no session
tickets arrive as application data after the handshake), and the TLS records of each response
counted by their 5-byte headers. The device answers each request with one ``write`` of head
and body, so the relay reads it in one piece; before write coalescing the head, the body and the
chunked terminator were three records and three ``send`` calls.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from pathlib import Path

import pytest

from .helpers import DOMAIN, FakePortal, RawServer, Relay

pytestmark = pytest.mark.integration

PAGE = b"<p>" + b"x" * 1000 + b"</p>"


async def _device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        kind = b"text/html" if b" /html " in head else b"application/octet-stream"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                     + str(len(PAGE)).encode() + b"\r\n\r\n" + PAGE)
        await writer.drain()


def _records(raw: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each complete TLS record in ``raw``."""
    out, offset = [], 0
    while offset + 5 <= len(raw):
        kind, _version, length = struct.unpack("!BHH", raw[offset:offset + 5])
        if offset + 5 + length > len(raw):
            break
        out.append((kind, length))
        offset += 5 + length
    return out


class _RawTls:
    """A blocking TLS client whose ciphertext is visible (MemoryBIO), run in a thread."""

    def __init__(self, relay: Relay, sid: str) -> None:
        context = ssl.create_default_context()
        relay.ca.configure_trust(context)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=f"s-{sid}.{DOMAIN}")
        self.sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.incoming.write(self.sock.recv(65536))
        self.sock.sendall(self.outgoing.read())

    def exchange(self, request: bytes, body_size: int) -> tuple[bytes, list[tuple[int, int]]]:
        """Send ``request``; return the plaintext response and the records it came in."""
        self.tls.write(request)
        self.sock.sendall(self.outgoing.read())
        raw, plain = b"", b""
        while b"\r\n\r\n" not in plain or len(plain.split(b"\r\n\r\n", 1)[1]) < body_size \
                or (b"chunked" in plain.split(b"\r\n\r\n", 1)[0].lower()
                    and not plain.endswith(b"0\r\n\r\n")):
            chunk = self.sock.recv(65536)
            assert chunk, "the relay closed the connection"
            raw += chunk
            self.incoming.write(chunk)
            try:
                while piece := self.tls.read(65536):
                    plain += piece
            except ssl.SSLWantReadError:
                pass
        return plain, _records(raw)

    def close(self) -> None:
        self.sock.close()


async def test_a_small_response_is_one_tls_record(tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(_device) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        client = await asyncio.to_thread(_RawTls, relay, sid)
        try:
            for path in ("/html", "/bin", "/html"):  # rewritten (chunked) and passed as is
                request = (f"GET {path} HTTP/1.1\r\nHost: {relay.host(sid)}\r\n"
                           f"Cookie: {cookie}\r\n\r\n").encode()
                plain, records = await asyncio.to_thread(client.exchange, request, len(PAGE))
                assert plain.startswith(b"HTTP/1.1 200 "), plain[:200]
                assert plain.split(b"\r\n\r\n", 1)[1].count(b"x") == 1000
                assert [kind for kind, _ in records] == [23], (path, records)
        finally:
            client.close()
