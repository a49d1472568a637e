"""Server-side TLS over asyncio streams with a MemoryBIO, so a refused handshake still says why.

asyncio's own TLS (``start_server(ssl=...)``) aborts the connection when a handshake fails
without flushing what OpenSSL queued, so a client offering only TLS 1.2+ to a TLS 1.0/1.1 device
sees a bare EOF or reset. A real legacy device answers with a ``protocol_version`` alert, and
that alert is what tells a client (and the on-site agent) "this device needs legacy TLS". So
for the legacy listener the handshake and record layer run here, on a plain TCP stream::

    socket ──▶ StreamReader ──▶ MemoryBIO(in)  ──▶ SSLObject ──▶ read()  ──▶ HTTP server
    socket ◀── StreamWriter ◀── MemoryBIO(out) ◀── SSLObject ◀── write() ◀── HTTP server

On a handshake error the outgoing BIO (holding the alert) is written before the error is
raised. :class:`TlsServerStream` offers the subset of the StreamReader/StreamWriter interface the
EWS server uses, so the HTTP and WebSocket code does not know which TLS it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

__all__ = ["TlsServerStream"]

_READ_SIZE = 65536


class TlsServerStream:
    """One server-side TLS connection over a plain ``reader``/``writer`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 context: ssl.SSLContext) -> None:
        self._reader = reader
        self._writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _fill(self) -> bool:
        """Feed the next bytes from the socket to OpenSSL; False at EOF."""
        data = await self._reader.read(_READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        """Run the handshake; on failure send OpenSSL's alert, then raise ``ssl.SSLError``."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                await self._writer.drain()
                if not await self._fill():
                    raise ConnectionResetError(
                        "the client closed during the TLS handshake") from None
                continue
            except ssl.SSLError:
                self._flush()  # the alert: protocol_version, handshake_failure, ...
                with contextlib.suppress(OSError):
                    await self._writer.drain()
                raise
            self._flush()
            await self._writer.drain()
            return

    async def read(self, size: int = _READ_SIZE) -> bytes:
        """Up to ``size`` decrypted bytes; ``b""`` once the client closed (cleanly or not)."""
        while not self._eof:
            try:
                return self._ssl.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if not await self._fill():
                    self._eof = True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True
        return b""

    def write(self, data: bytes) -> None:
        self._ssl.write(data)
        self._flush()

    async def drain(self) -> None:
        await self._writer.drain()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._ssl.unwrap()  # queues close_notify
        with contextlib.suppress(OSError, ValueError):
            self._flush()
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        return self._writer.get_extra_info(name, default)
