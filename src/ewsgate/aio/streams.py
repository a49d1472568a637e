"""A tunnel stream as the code above sees it: ``read``/``write``/``drain``/``close``.

:class:`TunnelStream` looks like a socket connection. Reads come from a buffer that holds at
most one stream window (the peer cannot send more until :meth:`TunnelStream.read` returns
credit); writes go to a pending queue that the connection moves into frames as the send window
allows, and :meth:`TunnelStream.drain` waits while that queue is over its high-water mark -- the
same back-pressure contract as :class:`asyncio.StreamWriter`.

For splicing to a socket without a coroutine per chunk there is a push mode
(:meth:`TunnelStream.set_sink`): received bytes go straight to a callback, and credit is
returned unless the sink said it is full (:meth:`pause_sink`), so a slow socket still stops the
sender.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ewsgate.aio.errors import StreamResetError, TunnelClosedError, TunnelError
from ewsgate.tunnel import ErrorCode

if TYPE_CHECKING:
    from ewsgate.aio.connection import TunnelConnection

__all__ = ["TunnelStream"]

#: pending bytes above which drain() waits
HIGH_WATER = 256 * 1024


class TunnelStream:
    """One stream of a :class:`~ewsgate.aio.connection.TunnelConnection`."""

    def __init__(self, conn: TunnelConnection, stream_id: int, port_index: int,
                 metadata: bytes = b"") -> None:
        self._conn = conn
        self.stream_id = stream_id
        #: index into the device's configured endpoint list
        self.port_index = port_index
        self.metadata = metadata
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: TunnelError | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        # sending
        self.pending: deque[bytes | memoryview] = deque()
        self.pending_size = 0
        self.fin_queued = False
        self.fin_sent = False
        self.close_queued = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._drained_callbacks: list[Callable[[], None]] = []
        self._done: asyncio.Future[None] = conn.loop.create_future()
        # push mode
        self._sink: Callable[[bytes], None] | None = None
        self._sink_eof: Callable[[], None] | None = None
        self._sink_error: Callable[[TunnelError], None] | None = None
        self._sink_paused = False
        self._sink_unacked = 0

    # ------------------------------------------------------------------ reading

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes (``n < 0``: everything until EOF); ``b""`` at EOF.

        Returns every buffered chunk that fits in ``n`` (at least the first, cut to ``n``)
        and acknowledges them together, so the peer gets the credit back in one step.
        """
        if n < 0:
            parts = []
            while chunk := await self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof or n == 0:
                return b""
            self._read_waiter = self._conn.loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        chunks = self._chunks
        chunk = chunks.popleft()
        size = len(chunk)
        if size > n:
            chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
            size = n
        elif chunks and size + len(chunks[0]) <= n:
            # Everything already here that fits, in one read and one acknowledgement: a
            # 64 KiB body that arrived as four frames costs one await and one trip through
            # the caller's parser, not four. Only whole chunks are taken (no slicing copy).
            parts = [chunk]
            while chunks and size + len(chunks[0]) <= n:
                part = chunks.popleft()
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        self._buffered -= size
        self._conn.acknowledge(self.stream_id, size)
        return chunk

    async def readexactly(self, n: int) -> bytes:
        parts, need = [], n
        while need:
            chunk = await self.read(need)
            if not chunk:
                raise TunnelClosedError(f"stream ended after {n - need} of {n} bytes",
                                        ErrorCode.STREAM_CLOSED)
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet (bounded by the stream window)."""
        return self._buffered

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; call :meth:`drain` to wait for room."""
        if self._error is not None:
            raise self._error
        if self.fin_queued:
            raise TunnelClosedError("write after write_eof/close", ErrorCode.STREAM_CLOSED)
        if not data:
            return
        self.pending.append(data if isinstance(data, bytes | memoryview) else bytes(data))
        self.pending_size += len(data)
        self._conn.pump(self)

    async def drain(self) -> None:
        """Wait until the pending queue is under the high-water mark (or raise if reset)."""
        while self.pending_size > HIGH_WATER:
            if self._error is not None:
                raise self._error
            waiter = self._conn.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._error is not None:
            raise self._error

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.write(data)
        await self.drain()

    def write_eof(self) -> None:
        """Half-close after the pending data: the peer reads EOF, we may still read."""
        if self.fin_queued or self._error is not None:
            return
        self.fin_queued = True
        self._conn.pump(self)

    def close(self) -> None:
        """Done both ways: send what is pending, FIN, then cancel the peer's side if needed."""
        if self._error is not None or self.close_queued:
            return
        self.close_queued = True
        self.write_eof()

    def reset(self, code: ErrorCode = ErrorCode.CANCEL, reason: str = "") -> None:
        """Abort the stream at once, both ways, with ``code``."""
        if self._error is not None:
            return
        self._conn.reset(self, code, reason)
        self.on_reset(StreamResetError(reason or f"stream reset ({code.name})", code,
                                       remote=False))

    def accept(self) -> None:
        """Agent: the device is connected; tell the relay that data may flow."""
        self._conn.accept_stream(self)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._done)

    @property
    def closed(self) -> bool:
        return self._done.done()

    @property
    def error(self) -> TunnelError | None:
        return self._error

    # ------------------------------------------------------------------ push mode

    def set_sink(self, data: Callable[[bytes], None], eof: Callable[[], None],
                 error: Callable[[TunnelError], None]) -> None:
        """Deliver received bytes to ``data`` instead of buffering them for :meth:`read`."""
        self._sink, self._sink_eof, self._sink_error = data, eof, error
        while self._chunks:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            self._sink_deliver(chunk)
        if self._eof:
            eof()
        if self._error is not None:
            error(self._error)

    def pause_sink(self) -> None:
        """The sink is full: stop returning credit, so the peer stops sending."""
        self._sink_paused = True

    def resume_sink(self) -> None:
        self._sink_paused = False
        if self._sink_unacked:
            size, self._sink_unacked = self._sink_unacked, 0
            self._conn.acknowledge(self.stream_id, size)

    def on_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the pending queue drops under the high-water mark."""
        if self.pending_size <= HIGH_WATER:
            callback()
        else:
            self._drained_callbacks.append(callback)

    def _sink_deliver(self, data: bytes) -> None:
        assert self._sink is not None
        self._sink(data)
        if self._sink_paused:
            self._sink_unacked += len(data)
        else:
            self._conn.acknowledge(self.stream_id, len(data))

    # ------------------------------------------------------------------ from the connection

    def on_data(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink_deliver(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake_reader()

    def on_eof(self) -> None:
        self._eof = True
        if self._sink_eof is not None:
            self._sink_eof()
        self._wake_reader()
        self._maybe_done()

    def on_reset(self, error: TunnelError) -> None:
        if self._error is not None:
            return
        self._error = error
        self.pending.clear()
        self.pending_size = 0
        if self._sink_error is not None:
            self._sink_error(error)
        self._wake_reader()
        self.on_pending_low()
        if not self._done.done():
            self._done.set_result(None)
        self._conn.forget(self)

    def on_pending_low(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        callbacks, self._drained_callbacks = self._drained_callbacks, []
        for callback in callbacks:
            callback()

    def on_fin_sent(self) -> None:
        self.fin_sent = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.fin_sent and self._eof and not self._done.done():
            self._done.set_result(None)
            self._conn.forget(self)

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
