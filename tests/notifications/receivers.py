"""Real receivers on 127.0.0.1 for the notification tests.

* :class:`SmtpReceiver` — aiosmtpd in this event loop: STARTTLS required (a trustme
  certificate), AUTH PLAIN/LOGIN with one user; keeps each message it accepted, parsed.
* :class:`WebhookReceiver` — an HTTPS server (TLS from the same test CA, HTTP/1.1 parsed by
  h11) that answers each POST with the next status of a script and keeps what it received.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import h11
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["LoopbackCA", "Received", "SmtpReceiver", "WebhookReceiver"]


class LoopbackCA:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class _Handler:
    def __init__(self, sink: list[EmailMessage], envelopes: list[Any]) -> None:
        self.sink, self.envelopes = sink, envelopes

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.sink.append(message)
        self.envelopes.append(envelope)
        return "250 OK"


class SmtpReceiver:
    """``async with SmtpReceiver(ca) as smtp: smtp.port, smtp.messages``."""

    def __init__(self, ca: LoopbackCA, *, user: str = "notify", password: str = "s3cret pass",
                 tls: bool = True) -> None:
        self.ca, self.user, self.password, self.tls = ca, user, password, tls
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.logins: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
              and data.password.decode() == self.password)
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok)

    async def __aenter__(self) -> SmtpReceiver:
        handler = _Handler(self.messages, self.envelopes)
        context = self.ca.server_context() if self.tls else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="localhost", tls_context=context,
                         require_starttls=self.tls, auth_required=self.tls,
                         authenticator=self._authenticate if self.tls else None),
            "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@dataclass
class Received:
    """One request the webhook receiver got."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """``async with WebhookReceiver(ca, statuses=[503, 200]) as hook: hook.url``."""

    ca: LoopbackCA
    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hooks/ewsgate"

    def _next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request, body = event, b""
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    self.received.append(Received(
                        request.method.decode(), request.target.decode(),
                        {k.decode().lower(): v.decode() for k, v in request.headers}, body))
                    status = self._next_status()
                    writer.write(conn.send(h11.Response(status_code=status, headers=[
                        ("content-length", "2"), ("connection", "close")])) or b"")
                    writer.write(conn.send(h11.Data(data=b"ok")) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            writer.close()
            self._connections.discard(task)

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                  ssl=self.ca.server_context())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await self._server.wait_closed()
