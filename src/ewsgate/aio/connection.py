"""The asyncio side of one tunnel connection: read -> feed -> dispatch, and flush.

:class:`TunnelConnection` is an :class:`asyncio.Protocol` wrapped around the sans-I/O
:class:`ewsgate.tunnel.Connection`. It is the only place where tunnel bytes meet a transport:

* ``data_received`` feeds the core and dispatches each event to its :class:`TunnelStream`;
  the bytes the core queued (WINDOW, PING ACK, RESET...) are written once per batch.
* Writes from streams are moved into DATA frames as far as the send windows allow, and the
  transport write is coalesced: one ``transport.write`` per event-loop iteration.
* Back-pressure both ways: when the transport's buffer is full (``pause_writing``) no more
  DATA is framed, so ``TunnelStream.drain`` blocks; inbound, the peer can never send more than
  the windows we granted, so nothing is paused on the read side and memory stays bounded.
* A keepalive timer calls ``core.tick(clock())`` with an injected clock; a dead peer ends the
  connection, and the same time refills the core's abuse budgets.
* A peer that breaks the protocol or floods (GOAWAY ``ENHANCE_YOUR_CALM`` from the core) is
  reported to ``on_violation`` and recorded in :attr:`TunnelConnection.violation`; a stream
  reset before its handler's task first ran never reaches the handler.

Cancellation, cleanup and the mapping of transport failures to :class:`TunnelError` live here,
never in the core.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ewsgate.aio.errors import StreamRefusedError, StreamResetError, TunnelClosedError, TunnelError
from ewsgate.aio.streams import HIGH_WATER, TunnelStream
from ewsgate.tunnel import (
    Connection,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    Event,
    GoawayReceived,
    HelloReceived,
    LocalProtocolError,
    ProtocolConfig,
    Role,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)

__all__ = ["TunnelConnection", "ViolationHandler", "set_nodelay"]

log = logging.getLogger(__name__)

StreamHandler = Callable[[TunnelStream], Awaitable[None]]
#: ``on_violation(code, reason, budget)``: the peer broke the protocol or exhausted an abuse
#: budget (``budget`` names it, else ""); the core has already reset the stream or closed
#: the connection
ViolationHandler = Callable[[ErrorCode | int, str, str], None]
#: codes of a connection this end closed that are not the peer's fault
_NOT_A_VIOLATION = (ErrorCode.NO_ERROR, ErrorCode.KEEPALIVE_TIMEOUT, ErrorCode.INTERNAL_ERROR,
                    ErrorCode.CANCEL)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: every frame leaves at once (Nagle + delayed ACK cost OpenSSH 40 ms)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: how long a connection we closed for the peer's fault keeps reading (and discarding), so
#: that the GOAWAY reaches the peer instead of being lost to a TCP reset
LINGER = 0.5

#: size of the receive buffer TLS decrypts into (a BufferedProtocol: no allocation per read)
READ_BUFFER = 256 * 1024


class _ReadBuffer(threading.local):
    """One receive buffer per thread (so per event loop), shared by its tunnel connections.

    A transport fills the buffer and calls ``buffer_updated`` at once, in the same callback;
    the core parses it there and keeps no reference to it (a partial frame is copied out), so
    the next connection may reuse it. One buffer instead of one per connection saves
    ``READ_BUFFER`` bytes of RSS per tunnel, at either end.
    """

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_BUFFER))


_read_buffer = _ReadBuffer()


class TunnelConnection(asyncio.BufferedProtocol):
    """One tunnel connection; the relay opens streams, the agent serves them.

    A :class:`asyncio.BufferedProtocol`: the TLS layer decrypts straight into one reusable
    buffer (shared by the connections of the event loop's thread) and the core parses it in
    place, so a bulk transfer costs no allocation per TLS record and no joining of records.
    """

    def __init__(self, role: Role, *, config: ProtocolConfig | None = None,
                 credential: bytes = b"", on_stream: StreamHandler | None = None,
                 clock: Callable[[], float] = time.monotonic, tick_interval: float = 1.0,
                 loop: asyncio.AbstractEventLoop | None = None,
                 on_violation: ViolationHandler | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.core = Connection(role, config, credential)
        self.role = role
        self._on_stream = on_stream
        self._on_violation = on_violation
        #: why this end closed the connection for the peer's fault (None: it did not)
        self.violation: ConnectionTerminated | None = None
        self._clock = clock
        self._tick_interval = tick_interval
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, TunnelStream] = {}
        self._blocked: set[TunnelStream] = set()
        self._accept_waiters: dict[int, asyncio.Future[None]] = {}
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._read_view = _read_buffer.view
        self.hello: asyncio.Future[HelloReceived] = self.loop.create_future()
        self.closed: asyncio.Future[TunnelError] = self.loop.create_future()
        #: counters for logs and benchmarks
        self.bytes_in = 0
        self.bytes_out = 0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self._transport = cast(asyncio.Transport, transport)
        set_nodelay(transport)
        self._flush()
        self._timer = self.loop.call_later(self._tick_interval, self._on_timer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_view[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.bytes_in += len(data)
        events = self.core.receive_data(data)
        for event in events:
            self._dispatch(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self._finish(TunnelClosedError("the peer closed the tunnel connection",
                                       ErrorCode.NO_ERROR))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = f"tunnel connection lost: {exc}" if exc else "tunnel connection closed"
        self._finish(TunnelClosedError(reason, ErrorCode.INTERNAL_ERROR if exc else
                                       ErrorCode.NO_ERROR))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for stream in list(self._blocked):
            self.pump(stream)

    # ------------------------------------------------------------------ handshake

    async def wait_hello(self, within: float) -> HelloReceived:
        """The peer's HELLO, or :class:`TunnelError` if it refused us / went away / timed out."""
        try:
            async with asyncio.timeout(within):
                both: list[asyncio.Future[Any]] = [self.hello, self.closed]
                done, _ = await asyncio.wait(both,
                                             return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            self.abort(ErrorCode.PROTOCOL_ERROR, "no HELLO in time")
            raise TunnelClosedError(f"no tunnel HELLO within {within:.0f}s",
                                    ErrorCode.PROTOCOL_ERROR) from None
        if self.hello in done and self.core.state is not ConnectionState.CLOSED:
            return self.hello.result()
        raise self.closed.result() if self.closed.done() else TunnelClosedError(
            "the peer closed the connection during the handshake")

    def accept_peer(self) -> None:
        self.core.accept_peer()
        self._flush()

    def refuse_peer(self, code: ErrorCode, reason: str) -> None:
        self.core.refuse_peer(code, reason)
        self._flush()
        self._finish(TunnelClosedError(reason, code))

    # ------------------------------------------------------------------ streams

    async def open_stream(self, port_index: int, metadata: bytes = b"",
                          within: float = 30.0) -> TunnelStream:
        """Relay: open a stream to device port ``port_index`` and wait for the agent's ACCEPT.

        Raises :class:`StreamRefusedError` (destination refused, device unreachable...) or
        :class:`TunnelClosedError`.
        """
        async with asyncio.timeout(within):
            while not self.core.can_open_stream:
                self._raise_if_closed()
                if self.core.state is not ConnectionState.OPEN:
                    raise TunnelClosedError("the tunnel is closing; no new streams",
                                            ErrorCode.REFUSED_STREAM)
                waiter = self.loop.create_future()
                self._slot_waiters.append(waiter)
                either: list[asyncio.Future[Any]] = [waiter, self.closed]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            try:
                sid = self.core.open_stream(port_index, metadata)
            except LocalProtocolError as exc:
                raise TunnelError(exc.reason, exc.code) from None
            stream = TunnelStream(self, sid, port_index, metadata)
            self._streams[sid] = stream
            accepted = self._accept_waiters[sid] = self.loop.create_future()
            self._schedule_flush()
            try:
                await accepted
            except BaseException:
                if not stream.closed:
                    stream.reset(ErrorCode.CANCEL, "gave up waiting for the agent")
                raise
            finally:
                self._accept_waiters.pop(sid, None)
        return stream

    def accept_stream(self, stream: TunnelStream) -> None:
        """Agent: the device connection is up; tell the relay data may flow."""
        if stream.error is not None:
            raise stream.error
        self.core.accept_stream(stream.stream_id)
        self.pump(stream)
        self._schedule_flush()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # ------------------------------------------------------------------ used by TunnelStream

    def pump(self, stream: TunnelStream) -> None:
        """Move the stream's pending bytes into DATA frames as far as the windows allow."""
        core = self.core
        sid = stream.stream_id
        if stream.error is not None or core.state is ConnectionState.CLOSED:
            return
        pending = stream.pending
        if not core.can_send(sid):
            # not accepted yet (a device that speaks first): keep it queued until ACCEPT
            return
        try:
            while pending and not self._paused:
                room = core.send_capacity(sid)
                if room <= 0:
                    break
                chunk = pending[0]
                size = len(chunk)
                if size <= room:
                    pending.popleft()
                    last = stream.fin_queued and not pending
                    core.send_data(sid, chunk, end_stream=last)
                    stream.pending_size -= size
                    if last:
                        self._after_fin(stream)
                else:
                    view = memoryview(chunk)
                    core.send_data(sid, view[:room])
                    pending[0] = view[room:]
                    stream.pending_size -= room
            if not pending and stream.fin_queued and not stream.fin_sent:
                core.end_stream(sid)
                self._after_fin(stream)
        except LocalProtocolError as exc:
            stream.on_reset(StreamResetError(exc.reason, exc.code, remote=False))
            return
        if pending:
            self._blocked.add(stream)
        else:
            self._blocked.discard(stream)
        if stream.pending_size <= HIGH_WATER:
            stream.on_pending_low()
        if self.core.has_output:
            self._schedule_flush()

    def _after_fin(self, stream: TunnelStream) -> None:
        stream.on_fin_sent()
        if stream.close_queued and not stream.at_eof() and stream.error is None:
            self.core.reset_stream(stream.stream_id, ErrorCode.CANCEL, "closed by the reader")
            stream.on_reset(StreamResetError("stream closed", ErrorCode.CANCEL, remote=False))

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.core.acknowledge_received(stream_id, size)
        if self.core.has_output:  # a WINDOW frame was queued (credit goes back in batches)
            self._schedule_flush()

    def reset(self, stream: TunnelStream, code: ErrorCode, reason: str) -> None:
        self.core.reset_stream(stream.stream_id, code, reason)
        self._schedule_flush()

    def forget(self, stream: TunnelStream) -> None:
        self._streams.pop(stream.stream_id, None)
        self._blocked.discard(stream)
        waiter = self._accept_waiters.pop(stream.stream_id, None)
        if waiter is not None and not waiter.done():
            error = stream.error or TunnelClosedError("stream closed", ErrorCode.STREAM_CLOSED)
            waiter.set_exception(StreamRefusedError(error.message, error.code))
        while self._slot_waiters:
            slot = self._slot_waiters.pop(0)
            if not slot.done():
                slot.set_result(None)
                break

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.on_data(event.data)
        elif isinstance(event, WindowUpdated):
            if event.stream_id == 0:
                for blocked in list(self._blocked):
                    self.pump(blocked)
            else:
                stream = self._streams.get(event.stream_id)
                if stream is not None and stream.pending:
                    self.pump(stream)
        elif isinstance(event, StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.on_eof()
        elif isinstance(event, StreamOpened):
            self._on_stream_opened(event)
        elif isinstance(event, StreamAccepted):
            waiter = self._accept_waiters.get(event.stream_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            stream = self._streams.get(event.stream_id)
            if stream is not None and (stream.pending or stream.fin_queued):
                self.pump(stream)
        elif isinstance(event, StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                text = event.reason or "stream reset"
                stream.on_reset(StreamResetError(text, event.error_code, event.remote))
            if not event.remote:  # the core reset it: the peer broke that stream's rules
                self._violated(event.error_code, event.reason, "")
        elif isinstance(event, HelloReceived):
            if not self.hello.done():
                self.hello.set_result(event)
        elif isinstance(event, GoawayReceived):
            log.info("tunnel peer sent GOAWAY (%s): %s", event.error_code, event.reason)
        elif isinstance(event, ConnectionTerminated):
            if not event.remote and event.error_code not in _NOT_A_VIOLATION:
                self.violation = event
                log.warning("tunnel peer %s: closed with %s: %s", "flooded" if event.budget
                            else "broke the protocol", event.error_code, event.reason)
                self._violated(event.error_code, event.reason, event.budget)
            self._flush()
            # record why before closing: closing a TLS transport may report EOF synchronously
            self._finish(TunnelClosedError(event.reason or "tunnel closed", event.error_code))

    def _violated(self, code: ErrorCode | int, reason: str, budget: str) -> None:
        if self._on_violation is not None:
            try:
                self._on_violation(code, reason, budget)
            except Exception:
                log.exception("tunnel violation handler failed")

    def _on_stream_opened(self, event: StreamOpened) -> None:
        stream = TunnelStream(self, event.stream_id, event.port_index, event.metadata)
        self._streams[event.stream_id] = stream
        if self._on_stream is None:
            stream.reset(ErrorCode.REFUSED_STREAM, "this end serves no streams")
            return
        task = self.loop.create_task(self._serve(stream, self._on_stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, stream: TunnelStream, handler: StreamHandler) -> None:
        if stream.error is not None:
            # reset (or the connection closed) between OPEN and this task's first step, e.g.
            # OPEN and RESET in one read: the handler -- a device dial -- never runs
            return
        try:
            await handler(stream)
        except TunnelError as exc:
            log.info("stream %d ended: %s", stream.stream_id, exc)
            stream.reset(exc.code if isinstance(exc.code, ErrorCode) else
                         ErrorCode.INTERNAL_ERROR, exc.message)
        except Exception as exc:
            log.exception("stream %d handler failed", stream.stream_id)
            stream.reset(ErrorCode.INTERNAL_ERROR, f"agent error: {type(exc).__name__}")

    # ------------------------------------------------------------------ closing

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """GOAWAY. NO_ERROR lets open streams finish; any other code ends everything now."""
        self.core.close(code, reason)
        self._flush()
        if code is not ErrorCode.NO_ERROR or self.core.is_drained:
            self._finish(TunnelClosedError(reason or "tunnel closed", code))

    def abort(self, code: ErrorCode, reason: str) -> None:
        self.close(code if code is not ErrorCode.NO_ERROR else ErrorCode.CANCEL, reason)

    async def wait_closed(self) -> TunnelError:
        """Wait for the end; returns why it ended."""
        return await asyncio.shield(self.closed)

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    def _raise_if_closed(self) -> None:
        if self.closed.done():
            raise self.closed.result()

    def _finish(self, error: TunnelError) -> None:
        if self.closed.done():
            return
        self.closed.set_result(error)
        if self._timer is not None:
            self._timer.cancel()
        if self.core.state is not ConnectionState.CLOSED:
            self.core.close(ErrorCode.CANCEL, "transport closed")
        for stream in list(self._streams.values()):
            stream.on_reset(StreamResetError(error.message, error.code, remote=True))
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        if self.violation is not None and self._transport is not None:
            # Our GOAWAY says why; closing a socket with unread bytes in its receive buffer
            # sends a TCP RST, and a peer's kernel drops what it had not read yet -- our GOAWAY
            # with it. So keep reading (the closed core discards it) for a moment first.
            self.loop.call_later(LINGER, self._close_transport)
            return
        self._close_transport()

    def _close_transport(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # ------------------------------------------------------------------ output

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        parts = self.core.data_to_send_parts()
        if parts and self._transport is not None and not self._transport.is_closing():
            if len(parts) == 1:
                self.bytes_out += len(parts[0])
                self._transport.write(parts[0])
            else:
                self.bytes_out += sum(map(len, parts))
                self._transport.writelines(parts)
        if self.core.is_drained and self.core.state is ConnectionState.CLOSING:
            self._close_transport()

    def _on_timer(self) -> None:
        for event in self.core.tick(self._clock()):
            self._dispatch(event)
        self._flush()
        if not self.closed.done():
            self._timer = self.loop.call_later(self._tick_interval, self._on_timer)
