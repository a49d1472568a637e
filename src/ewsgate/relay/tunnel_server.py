"""The relay's agent-facing listener: TLS 1.3 with client certificates, then a ticket.

Admission of one connection, in order (each refusal is logged with its reason and, after the
TLS handshake, sent to the agent in a GOAWAY ``TICKET_REFUSED`` whose text says what failed)::

    TLS 1.3 handshake   client certificate chained to the portal's CA (else no handshake)
    HELLO               within hello_within seconds; protocol version; credential
    ticket              signature (portal JWKS), iss, aud = this relay, typ, exp, jti replay,
                        sub == the certificate's urn:ewsgate:installation:<id>,
                        cnf x5t#S256 == SHA-256 of the certificate presented in the handshake
    session             not ended early (CloseSession), not expired
    revocations         the portal's event stream is up (heard within the bound), the session
                        was not ended at the portal, the installation was not revoked after the
                        ticket was issued (see relay.revocation), the certificate not superseded
    -> registry.register(ticket, connection); HELLO back; the relay may now open streams

Everything after admission belongs to :class:`~ewsgate.relay.registry.TunnelRegistry`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ewsgate.aio.connection import TunnelConnection
from ewsgate.aio.errors import TunnelError
from ewsgate.aio.tls import peer_installation_id, relay_tunnel_context
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.revocation import Revocations
from ewsgate.relay.tickets import TicketError, TicketVerifier
from ewsgate.revocations import cert_thumbprint
from ewsgate.textsafe import safe_text
from ewsgate.tunnel import ErrorCode, ProtocolConfig, Role

__all__ = ["TunnelServer", "TunnelServerConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TunnelServerConfig:
    """Where to listen and with which credentials (paths to PEM files)."""

    host: str = "127.0.0.1"
    port: int = 0
    cert_file: Path
    key_file: Path
    #: the portal's CA: the only issuer of acceptable client certificates
    client_ca_file: Path
    #: seconds an agent has, after TLS, to send its HELLO
    hello_within: float = 10.0
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)


class _RelaySide(TunnelConnection):
    def __init__(self, server: TunnelServer) -> None:
        super().__init__(Role.LISTENER, config=server.config.protocol,
                         clock=server.monotonic)
        self._server = server
        self.peer = "?"
        self.installation_id: str | None = None
        self.thumbprint: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ssl_object = transport.get_extra_info("ssl_object")
        self.installation_id = peer_installation_id(ssl_object)
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.thumbprint = cert_thumbprint(der) if der else None
        self._server.spawn(self._server.admit(self))


class TunnelServer:
    """Accepts agent tunnels and hands admitted ones to the registry."""

    def __init__(self, config: TunnelServerConfig, verifier: TicketVerifier,
                 registry: TunnelRegistry, *,
                 monotonic: Callable[[], float] | None = None,
                 revocations: Revocations | None = None) -> None:
        self.config = config
        self.verifier = verifier
        self.registry = registry
        #: the portal's revocations (None: no event stream, e.g. a bench harness)
        self.revocations = revocations
        #: the keepalive clock of every tunnel (monotonic seconds; injectable for tests)
        self.monotonic: Callable[[], float] = monotonic or time.monotonic
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusals: list[str] = []

    def ssl_context(self) -> ssl.SSLContext:
        c = self.config
        return relay_tunnel_context(c.cert_file, c.key_file, c.client_ca_file)

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _RelaySide(self), self.config.host, self.config.port,
            ssl=self.ssl_context(), ssl_handshake_timeout=self.config.hello_within)
        sock = self._server.sockets[0].getsockname()
        log.info("tunnel listener on %s:%s (TLS 1.3, client certificates)", sock[0], sock[1])
        return str(sock[0]), int(sock[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.registry.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def admit(self, conn: _RelaySide) -> None:
        try:
            hello = await conn.wait_hello(self.config.hello_within)
        except TunnelError as exc:
            self._refused(conn, f"no valid HELLO: {exc}")
            return
        try:
            ticket = await self.verifier.verify(hello.credential,
                                                installation_id=conn.installation_id,
                                                certificate_thumbprint=conn.thumbprint)
            if self.registry.is_closed(ticket.session_id):
                raise TicketError("session_closed", f"session {ticket.session_id} was ended; "
                                  "start a new one from the portal")
            if self.revocations is not None:
                refusal = self.revocations.refusal(ticket, now=self.registry.clock.now())
                if refusal is not None:
                    raise refusal
        except TicketError as exc:
            self._refused(conn, str(exc))
            conn.refuse_peer(ErrorCode.TICKET_REFUSED, str(exc))
            return
        if conn.is_closed:
            return
        self.registry.register(ticket, conn)
        conn.accept_peer()
        log.info("tunnel admitted: session %s, installation %s, generation %d, from %s",
                 ticket.session_id, ticket.installation_id, ticket.generation, conn.peer)

    def _refused(self, conn: _RelaySide, reason: str) -> None:
        message = (f"tunnel from {conn.peer} (installation "
                   f"{safe_text(conn.installation_id, limit=64)}) refused: "
                   f"{safe_text(reason, limit=300)}")
        log.warning("%s", message)
        self.refusals.append(message)
        del self.refusals[:-100]
