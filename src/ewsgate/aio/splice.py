"""Join a tunnel stream to a TCP (or TLS) connection, byte for byte, with back-pressure.

Used by the agent (stream <-> device socket) and by benchmarks/tests (a plain TCP listener
whose connections each become a stream). No coroutine per chunk: socket data goes straight
into :meth:`TunnelStream.write`, stream data straight into ``transport.write``.

Back-pressure: when the stream's pending queue is over its high-water mark, socket reading is
paused until it drains; when the socket's write buffer is full (``pause_writing``) the stream
stops returning credit, so the tunnel peer stops sending.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from ewsgate.aio.connection import set_nodelay
from ewsgate.aio.errors import TunnelError, map_exceptions
from ewsgate.aio.net import connect_tcp
from ewsgate.aio.streams import HIGH_WATER, TunnelStream
from ewsgate.tunnel import ErrorCode

__all__ = ["SpliceProtocol", "splice_connect"]


class SpliceProtocol(asyncio.Protocol):
    """The socket side of a splice; ``stream`` is the tunnel side."""

    def __init__(self, stream: TunnelStream) -> None:
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reading_paused = False
        self._socket_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: no isinstance
        set_nodelay(transport)

    def start(self) -> None:
        """Begin moving tunnel bytes to the socket (after the stream is accepted)."""
        self.stream.set_sink(self._to_socket, self._tunnel_eof, self._tunnel_error)

    # tunnel -> socket
    def _to_socket(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _tunnel_eof(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._socket_eof:
            transport.close()
        elif transport.can_write_eof():
            transport.write_eof()

    def _tunnel_error(self, error: TunnelError) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_writing(self) -> None:
        self.stream.pause_sink()

    def resume_writing(self) -> None:
        self.stream.resume_sink()

    # socket -> tunnel
    def data_received(self, data: bytes) -> None:
        try:
            self.stream.write(data)
        except TunnelError:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.stream.pending_size > HIGH_WATER and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()
            self.stream.on_drained(self._resume_reading)

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and \
                not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self._socket_eof = True
        self.stream.write_eof()
        # both directions finished: returning False lets asyncio close the socket
        return not self.stream.at_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if exc is not None:
            self.stream.reset(ErrorCode.CANCEL, f"the connection closed: {exc}")
        elif not self._socket_eof:
            self.stream.write_eof()
            if not self.stream.at_eof():
                self.stream.close()
        if not self.done.done():
            self.done.set_result(None)


async def splice_connect(stream: TunnelStream, host: str, port: int,
                         tls: ssl.SSLContext | None = None,
                         connect_within: float = 10.0) -> SpliceProtocol:
    """Connect to ``host:port`` (TLS if ``tls``) and return the splice (not started yet)."""
    loop = asyncio.get_running_loop()
    with map_exceptions(f"connecting to {host}:{port}"):
        async with asyncio.timeout(connect_within):
            # our own connect: a device's IP address goes to connect() without the event
            # loop's resolver threads (uvloop starts four for an IP literal too)
            sock = await connect_tcp(host, port)
            try:
                _, protocol = await loop.create_connection(
                    lambda: SpliceProtocol(stream), sock=sock, ssl=tls,
                    server_hostname="" if tls is not None else None)
            except BaseException:
                sock.close()
                raise
    return protocol
