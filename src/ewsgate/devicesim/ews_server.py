"""The simulated EWS's HTTP/1.x server: asyncio, h11 where the rules hold, raw bytes elsewhere.

One task per connection runs the loop ``read → h11 → Request → handler → Response → write``::

    socket ──bytes──▶ h11.Connection ──Request──▶ handler(Request)
                                                     │
    socket ◀──bytes── h11 (Framing.STANDARD) ◀───────┤ Response
    socket ◀──bytes── raw writer (quirk framings) ◀──┘ then close
    socket ◀═frames═▶ wsproto (WebSocketResponse after a 101)

Request bodies are streamed: the handler iterates :class:`_Body` and each iteration pulls the
next ``h11.Data`` from the socket, so a 1 GB firmware upload never sits in memory. Whatever body
a handler leaves unread is drained (up to 16 MiB, then the connection is closed) so keep-alive
stays correct. Response bodies given as async iterators are written chunk by chunk with
``drain()`` between chunks, which is what keeps a 200 MB log download at constant memory.

Quirk framings (:class:`ewsgate.devicesim.web.Framing`) bypass h11 and write the status line
and headers by hand; the connection is always closed after them, because after such a response
no correct client can know where the next one would begin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError
from wsproto.utilities import generate_accept_token

from ewsgate.devicesim.tls_stream import TlsServerStream
from ewsgate.devicesim.web import (
    BodyTooLarge,
    Framing,
    Request,
    Response,
    WebSocketResponse,
)

__all__ = ["App", "HttpListener", "serve_http"]

log = logging.getLogger("ewsgate.devicesim.http")

App = Callable[[Request], Awaitable[Response | WebSocketResponse]]


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

_READ_SIZE = 65536
_DRAIN_LIMIT = 16 * 1024 * 1024
_MAX_HEADER_BYTES = 64 * 1024
#: seconds without a byte from the client (between or inside requests) before it is dropped
_IDLE_TIMEOUT = 60.0


class HttpListener:
    """A listening EWS socket and its open connections; ``close()`` ends them all."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


async def serve_http(app: App, host: str, port: int, *, scheme: str,
                     ssl_context: ssl.SSLContext | None = None,
                     handshake_alerts: bool = False) -> HttpListener:
    """Listen on ``host:port`` (0 picks a free port) and serve ``app`` on every connection.

    ``handshake_alerts`` runs TLS in :class:`~ewsgate.devicesim.tls_stream.TlsServerStream`
    instead of asyncio's, so a refused handshake sends its alert (the legacy-TLS devices).
    """
    listener = HttpListener()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        listener.tasks.add(task)
        try:
            if handshake_alerts and ssl_context is not None:
                stream = TlsServerStream(reader, writer, ssl_context)
                try:
                    await asyncio.wait_for(stream.handshake(), 10)
                except (ssl.SSLError, OSError, TimeoutError) as exc:
                    log.info("TLS handshake refused: %s", exc)
                    writer.close()
                    return
                await _HttpConnection(stream, stream, app, scheme).run()
            else:
                await _HttpConnection(reader, writer, app, scheme).run()
        except asyncio.CancelledError:
            pass  # the listener is closing; ending quietly keeps asyncio from logging it
        finally:
            listener.tasks.discard(task)

    if ssl_context is None or handshake_alerts:
        listener.server = await asyncio.start_server(on_connect, host, port, limit=_READ_SIZE)
    else:
        listener.server = await asyncio.start_server(
            on_connect, host, port, ssl=ssl_context, limit=_READ_SIZE, ssl_handshake_timeout=10)
    return listener


class _HttpConnection:
    """One client connection; see the module docstring for the loop."""

    def __init__(self, reader: _Reader, writer: _Writer, app: App, scheme: str) -> None:
        self.reader = reader
        self.writer = writer
        self.app = app
        self.scheme = scheme
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def run(self) -> None:
        try:
            await self._loop()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, h11.LocalProtocolError,
                TimeoutError):
            pass  # the client went away, stalled, or we cannot speak to it any more
        except Exception:
            log.exception("connection from %s failed", self.peer)
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 2)

    async def _loop(self) -> None:
        while True:
            try:
                event = await self.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_error(exc.error_status_hint, str(exc))
                await self._linger()
                return
            if not isinstance(event, h11.Request):
                return
            request = Request(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("latin-1"),
                headers=[(k.decode("latin-1").lower(), v.decode("latin-1"))
                         for k, v in event.headers],
                http_version=event.http_version.decode("ascii"),
                scheme=self.scheme,
                body=_Body(self),
                peer=self.peer,
            )
            try:
                response = await self.app(request)
            except h11.RemoteProtocolError as exc:  # the request body was malformed
                await self._send_error(exc.error_status_hint, str(exc))
                await self._linger()
                return
            except ConnectionError:  # the client went away in the middle of its body
                return
            except Exception:
                log.exception("handler failed for %s %s", request.method, request.target)
                response = Response(500, [("Content-Type", "text/plain")],
                                    b"Internal error in the device web server\n")
            log.info("%s %s %s %s", self.peer, request.method, request.target,
                     getattr(response, "status", 101))
            if isinstance(response, WebSocketResponse):
                await self._upgrade(request, response)
                return
            if not await self._respond(request, response):
                return
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                self.conn.start_next_cycle()
            else:
                return

    async def next_event(self) -> object:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._send(h11.InformationalResponse(status_code=100, headers=[]))
                # an idle or stalled client is dropped, as embedded servers do
                self.conn.receive_data(await asyncio.wait_for(self.reader.read(_READ_SIZE),
                                                              _IDLE_TIMEOUT))
                continue
            return event

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _linger(self, seconds: float = 1.0, limit: int = 1024 * 1024) -> None:
        """Read and drop what the client still sends for a moment before closing, so the
        error response is not destroyed by a TCP reset (a "lingering close")."""
        with contextlib.suppress(Exception):
            await self.writer.drain()
            dropped = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while dropped < limit and (left := deadline - loop.time()) > 0:
                data = await asyncio.wait_for(self.reader.read(_READ_SIZE), left)
                if not data:
                    return
                dropped += len(data)

    async def _send_error(self, status: int, detail: str) -> None:
        body = f"{status} Bad request: {detail}\n".encode()
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send(h11.Response(status_code=status, headers=[
                ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                ("Connection", "close")]))
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())

    async def _drain_request(self) -> bool:
        """Read and drop what the handler left of the body; False when there was too much."""
        drained = 0
        while self.conn.their_state is h11.SEND_BODY:
            try:
                event = await self.next_event()
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.Data):
                drained += len(event.data)
                if drained > _DRAIN_LIMIT:
                    return False
            elif not isinstance(event, h11.EndOfMessage):
                return False
        return True

    async def _respond(self, request: Request, response: Response) -> bool:
        """Write ``response``; True when the connection may carry another request."""
        # a client still waiting for "100 Continue" has not sent its body: answer without it
        # (and close) rather than invite a body nobody will read
        waiting = self.conn.they_are_waiting_for_100_continue
        complete = False if waiting else await self._drain_request()
        if response.framing is not Framing.STANDARD:
            await self._write_raw(request, response)
            return False
        headers = list(response.headers)
        names = {name.lower() for name, _ in headers}
        if not complete:
            headers.append(("Connection", "close"))
        if isinstance(response.body, bytes) and "content-length" not in names:
            headers.append(("Content-Length", str(len(response.body))))
        await self._send(h11.Response(status_code=response.status, headers=headers,
                                      reason=response.reason.encode()))
        if request.method != "HEAD":
            if isinstance(response.body, bytes):
                if response.body:
                    await self._send(h11.Data(data=response.body))
            else:
                async for chunk in response.body:
                    if chunk:
                        await self._send(h11.Data(data=chunk))
        elif not isinstance(response.body, bytes):
            await _aclose(response.body)
        await self._send(h11.EndOfMessage())
        return complete and self.conn.our_state is h11.DONE

    async def _write_raw(self, request: Request, response: Response) -> None:
        framing = response.framing
        version = "HTTP/1.1" if framing in (Framing.CHUNKED_RAW,
                                            Framing.LENGTH_AND_CHUNKED) else "HTTP/1.0"
        chunks = [response.body] if isinstance(response.body, bytes) else None
        headers = list(response.headers)
        if framing is Framing.LENGTH_AND_CHUNKED:
            if chunks is None:
                raise ValueError("LENGTH_AND_CHUNKED needs a bytes body to know its length")
            headers.append(("Content-Length", str(len(response.body))))  # type: ignore[arg-type]
        if framing is not Framing.EOF_HTTP10:
            headers.append(("Transfer-Encoding", "chunked"))
        headers.append(("Connection", "close"))
        head = f"{version} {response.status} {response.reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        self.writer.write(head.encode("latin-1"))
        await self.writer.drain()
        if request.method == "HEAD":
            return
        chunked = framing is not Framing.EOF_HTTP10
        async for chunk in _iterate(response.body):
            if not chunk:
                continue
            self.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await self.writer.drain()
        if chunked and framing is not Framing.HTTP10_CHUNKED_NO_END:
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()

    async def _upgrade(self, request: Request, response: WebSocketResponse) -> None:
        key = request.header("sec-websocket-key")
        upgrade = (request.header("upgrade") or "").lower()
        if request.method != "GET" or upgrade != "websocket" or not key:
            await self._respond(request, Response(
                426, [("Content-Type", "text/plain"), ("Upgrade", "websocket")],
                b"This address speaks WebSocket only (send Upgrade: websocket)\n"))
            return
        await self._drain_request()
        headers: list[tuple[str, str]] = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        if response.accept != "missing":
            # "wrong": the answer to another key (a hostile or broken device)
            answered = key if response.accept == "computed" else "dGhlIHNhbXBsZSBub25jZQ=="
            headers.append(("Sec-WebSocket-Accept",
                            generate_accept_token(answered.encode()).decode("ascii")))
        await self._send(h11.InformationalResponse(status_code=101,
                                                   headers=headers + response.headers))
        leftover, _closed = self.conn.trailing_data
        if response.raw is not None:
            await response.raw(leftover, self.reader, self.writer)
            return
        socket = _WebSocket(self.reader, self.writer, leftover)
        reader_task = asyncio.create_task(socket.pump())
        try:
            await response.session(socket)
            await socket.close()
        finally:
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader_task


class _Body:
    """Streams the current request's body out of the connection's h11 state machine."""

    def __init__(self, connection: _HttpConnection) -> None:
        self._connection = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._connection.conn
        while conn.their_state is h11.SEND_BODY:
            event = await self._connection.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise ConnectionResetError("the client closed before the end of the body")

    async def read(self, limit: int = 1024 * 1024) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


class _WebSocket:
    """A server-side WebSocket on a raw stream: wsproto frames, messages reassembled."""

    def __init__(self, reader: _Reader, writer: _Writer, leftover: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = WsConnection(ConnectionType.SERVER)
        self._leftover = leftover
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._closed = False
        self._lock = asyncio.Lock()

    async def _flush(self, data: bytes) -> None:
        if data:
            async with self._lock:
                self._writer.write(data)
                await self._writer.drain()

    async def pump(self) -> None:
        """Read frames until the peer closes; queue complete messages."""
        parts: list[str | bytes] = []
        data = self._leftover
        try:
            while True:
                if data:
                    self._ws.receive_data(data)
                for event in self._ws.events():
                    if isinstance(event, Message):
                        parts.append(event.data)
                        if event.message_finished:
                            if isinstance(event, TextMessage):
                                self._inbox.put_nowait("".join(p for p in parts
                                                               if isinstance(p, str)))
                            elif isinstance(event, BytesMessage):
                                self._inbox.put_nowait(b"".join(p for p in parts
                                                                if isinstance(p, bytes)))
                            parts = []
                    elif isinstance(event, Ping):
                        await self._flush(self._ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if not self._closed:
                            self._closed = True
                            await self._flush(self._ws.send(event.response()))
                        return
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    return
        except (OSError, WsRemoteProtocolError):
            return
        finally:
            self._closed = True
            self._inbox.put_nowait(None)

    async def send_text(self, text: str) -> None:
        if self._closed:
            raise ConnectionResetError("the WebSocket is closed")
        await self._flush(self._ws.send(TextMessage(data=text)))

    async def receive(self) -> str | bytes | None:
        return await self._inbox.get()

    async def close(self, code: int = 1000) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._flush(self._ws.send(CloseConnection(code=code)))


async def _iterate(body: bytes | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(body, bytes):
        yield body
    else:
        async for chunk in body:
            yield chunk


async def _aclose(body: AsyncIterator[bytes]) -> None:
    closer = getattr(body, "aclose", None)
    if closer is not None:
        await closer()
