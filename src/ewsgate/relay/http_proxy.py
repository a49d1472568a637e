"""The browser-facing reverse proxy: one h11 loop per browser connection, streaming both ways.

Theory of operation (one browser connection, after TLS)::

    browser ──bytes──▶ h11 server ──Request──▶ checks ──▶ h11 client ──bytes──▶ device stream
       ▲                                        │  host → session, expiry, cookie,
       │                                        │  cross-site, smuggling leftovers
       └──bytes── h11 server ◀── rewrite+harden ◀── Response/Data ◀── h11 client ◀──┘

- **Parsing** is h11 on both sides (sans-I/O, strict on requests): Content-Length together with
  Transfer-Encoding is refused (h11 lets TE win; a proxy must not guess), so are any coding but
  ``chunked``, bad chunk sizes, conflicting lengths, request heads above ``max_header_bytes``
  (431) and anything but an origin-form target. Obsolete line folding is unfolded by h11 into one
  line before it is re-serialised (RFC 9112 §5.2 allows exactly that), so the device never sees
  a fold. The device's responses go through the same h11 as a client, which is lenient where
  embedded servers need it: HTTP/1.0, bodies ended by EOF, chunked answers to anything, both
  Content-Length and chunked (chunked wins).
- **Re-serialising** to the device: ``Host``, ``Origin`` and ``Referer`` are rewritten to the
  device's LAN view; hop-by-hop headers, ``X-Forwarded-*``/``Forwarded``/``X-Real-IP`` from the
  client, ``Proxy-Authorization`` and ``Expect`` are stripped; of the cookies only this
  session's device cookies pass, renamed back (:mod:`.device_cookies`); ``Accept-Encoding``
  is limited to what the rewriter can decode. No forwarding headers are added: the device has
  no use for them and they would tell it who the technician is.
  ``Authorization`` passes through (devices use HTTP Basic/Digest).
- **Heads are validated once**: h11 gets each outgoing head with only the headers it acts on
  (``Host``, framing, the upgrade), and the other lines are appended serialised: lines h11
  parsed (they matched the field grammar then), values the relay composed (rewritten ones are
  checked against that grammar here) and the security headers, one cached block per session
  host. Building and validating each head again in h11 was the largest cost of a small request.
- **Streaming**: bodies move in reads of ``read_size`` bytes, each written with ``drain`` before
  the next read, so a slow side slows the other instead of filling memory; a 1 GiB upload takes
  the memory of a few reads. Browser-bound bytes are coalesced: a response head and its body
  pieces are held until the message ends, ``read_size`` bytes are held or the proxy would wait
  for the device, so a small page leaves as one TLS record and one ``send``. The request body
  is pumped in its own task while the response is
  read, so a device that answers before reading the whole body (401, 413) is not deadlocked.
- **Responses** are re-framed by h11 for the browser (chunked for HTTP/1.1 when the length is
  unknown, close-delimited for HTTP/1.0 clients), rewritten (:mod:`.rewrite`) and hardened
  (:mod:`.hardening`).
- **WebSockets**: an ``Upgrade: websocket`` request whose ``Origin`` is the session origin and
  whose handshake is valid (:mod:`.ws_handshake`) is forwarded with the relay's own key; a
  device ``101`` that does not answer it gets the browser a 502. After the switch, frames are
  parsed on both sides and re-framed (:mod:`.ws_bridge`, :mod:`.ws_proxy`): nothing but
  WebSocket frames passes, and at the session's end both sides get close 1008.
- **Timeouts**: ``header_timeout`` for a whole request head from its first byte (slow-loris),
  ``idle_timeout`` between requests, ``body_timeout`` for a body making no progress (long, for
  firmware uploads), ``response_timeout`` (``--response-timeout``, 60 s) for the device's
  response head.
- **Outcomes are what happened** (:mod:`.outcomes`): a device-side failure (a reset tunnel
  stream, a device that closes or stalls) before the response head is a 502/504 page, after it
  the browser connection is aborted, never ended as if the body were whole; a browser that
  leaves is ``client_gone``; anything unexpected is logged with the session id and recorded as
  ``error``/``internal``, and no exception leaves the connection handler.
- **Fail closed on the audit log**: a forwarded request is spooled (``pending``) before the
  device sees it and completed before its response's last bytes leave; when the spool cannot
  take the entry, the request is not forwarded, or the response not delivered (503 "the audit
  log is unavailable"), and no sign-in starts.
- **Expiry**: once a connection is bound to a session, a watchdog on the relay's clock cancels
  it at the session's end: in-flight responses are cut, WebSockets get close 1008 both ways and
  a short grace, and the next request on a new connection gets the "session ended" page. A
  session ended early reaches its connections the same way (:meth:`RelayProxy.end_session`,
  called by the tunnel registry's session-end listeners).

Every request that names a session is written to the access log with its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import re
import socket
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11

from ewsgate.relay import outcomes
from ewsgate.relay.access_log import AccessLog, AuditLogUnavailable
from ewsgate.relay.browser_auth import Authenticator, Identity, RelayResponse
from ewsgate.relay.clock import Clock
from ewsgate.relay.device_cookies import DeviceCookies, HtmlShimInjector
from ewsgate.relay.hardening import (
    check_request_site,
    dropped_response_header,
    security_header_block,
    security_headers,
)
from ewsgate.relay.log_redaction import log_detail, log_url
from ewsgate.relay.navigation import (
    Landings,
    check_navigation,
    foreign_navigation,
    same_origin_path,
)
from ewsgate.relay.portal_sessions import SessionStatusSource
from ewsgate.relay.redirects import REFUSED_PATH, MetaRefreshGuard, RedirectPolicy
from ewsgate.relay.request_hygiene import check_header_fields, check_target, stripped
from ewsgate.relay.rewrite import (
    BodyDecoder,
    LanRewriter,
    StreamRewriter,
    rewritable_content_type,
)
from ewsgate.relay.server_names import ServerNames
from ewsgate.relay.session_pages import render
from ewsgate.relay.session_policy import IdleWatch
from ewsgate.relay.sign_out import LOGOUT_PATH, clearing_headers, sign_out_allowed
from ewsgate.relay.upstream import (
    ByteStream,
    DeviceStreamError,
    SessionDirectory,
    SessionInfo,
    UpstreamUnavailable,
)
from ewsgate.relay.ws_handshake import (
    BrowserHandshake,
    HandshakeRefused,
    browser_switch_headers,
    check_browser_request,
    check_device_switch,
    device_handshake_lines,
)
from ewsgate.relay.ws_proxy import WebSocketProxy
from ewsgate.textsafe import safe_text

__all__ = ["MAX_SESSION_SECONDS", "ProxyConfig", "RelayProxy"]

log = logging.getLogger(__name__)
#: every refusal with the client's address (the job's log entry carries the code)
refusals = logging.getLogger("ewsgate.relay.refusals")

MAX_SESSION_SECONDS = 30 * 60
RELAY_PATH_PREFIX = "/.ewsgate/"

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
_CLIENT_STRIPPED = frozenset({
    b"forwarded", b"x-real-ip", b"expect", b"host", b"origin", b"referer", b"cookie",
    b"accept-encoding", b"content-length",
})
_SESSION_LABEL = re.compile(r"s-([a-z0-9]{16,63})")
#: a header field value exactly as h11 accepts one (its ``field_value``: no NUL, CR or LF, no
#: leading or trailing blank): checked on the values the relay composes itself; values parsed
#: by h11 already matched it
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")


@dataclass(frozen=True)
class ProxyConfig:
    """The browser side's settings, validated once at start-up."""

    #: session hosts are ``s-<id>.<domain>``
    domain: str
    #: the portal's URL, for links on the relay's pages
    portal_url: str
    #: the port browsers use (written in session origins when not 443)
    public_port: int = 443
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    body_timeout: float = 300.0
    response_timeout: float = 60.0
    max_header_bytes: int = 32 * 1024
    read_size: int = 64 * 1024
    #: no session lives longer than this on the relay, whatever its ticket says
    max_session_seconds: float = MAX_SESSION_SECONDS
    #: how long a WebSocket's peers get to answer a close (then the connection is cut)
    websocket_close_grace: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.max_session_seconds <= MAX_SESSION_SECONDS:
            raise ValueError(
                f"max_session_seconds {self.max_session_seconds} is out of range: sessions may "
                f"last at most {MAX_SESSION_SECONDS} s (30 minutes); choose a value up to that")
        for name in ("header_timeout", "idle_timeout", "body_timeout", "response_timeout",
                     "websocket_close_grace"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")
        object.__setattr__(self, "domain", self.domain.lower().strip("."))

    def session_host(self, session_id: str) -> str:
        """``s-<id>.<domain>`` with ``:port`` unless the port is 443."""
        host = f"s-{session_id}.{self.domain}"
        return host if self.public_port == 443 else f"{host}:{self.public_port}"

    def session_origin(self, session_id: str) -> str:
        return f"https://{self.session_host(session_id)}"

    def session_id_for_host(self, host: bytes) -> str | None:
        """The session id a ``Host`` header names, or None if it is not a session host."""
        text = host.decode("ascii", "replace").strip().lower()
        name, _, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
        if not name:
            name, port = text, ""
        if port and port != str(self.public_port):
            return None
        label, _, rest = name.partition(".")
        if rest.rstrip(".") != self.domain:
            return None
        match = _SESSION_LABEL.fullmatch(label)
        return match.group(1) if match else None


@dataclass
class _Exchange:
    """What the access log needs about one request, filled in as it goes."""

    session_id: str
    method: str
    url: str
    started: float
    wall: float
    user: str | None = None
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    outcome: str = "ok"
    detail: str | None = None
    logged: bool = False
    #: the browser's address (written into refusals' detail)
    client: str | None = None
    #: the spooled begin record's seq, once the request was forwarded
    seq: int | None = None


class _CloseConnection(Exception):
    """Stop serving this browser connection (after whatever was already sent)."""


class _BrowserGone(ConnectionResetError):
    """Writing to the browser failed while the proxy was reading the device: the browser's
    side, however it surfaces."""


@dataclass
class _Upstream:
    stream: ByteStream
    conn: h11.Connection = field(default_factory=lambda: h11.Connection(
        h11.CLIENT, max_incomplete_event_size=64 * 1024))


def _tokens(value: bytes | None) -> set[bytes]:
    return {token.strip().lower() for token in (value or b"").split(b",") if token.strip()}


class RelayProxy:
    """Serves browser connections for every session on this relay."""

    def __init__(self, config: ProxyConfig, directory: SessionDirectory, auth: Authenticator,
                 access_log: AccessLog | None, clock: Clock,
                 sessions: SessionStatusSource | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.directory = directory
        self.auth = auth
        self.access_log = access_log
        self.clock = clock
        #: session id → when this relay first saw it (caps the lifetime at the maximum)
        self._first_seen: dict[str, float] = {}
        #: sessions seen ending here, so later requests get "ended", not "not found"
        self._ended: dict[str, float] = {}
        #: the end of every session seen live (to tell "ended" from "tunnel down")
        self._known_end: dict[str, float] = {}
        #: why new sign-ins are refused now (the portal unreachable), or None; set by main
        self.sign_in_refusal: Callable[[], str | None] | None = None
        #: session id → when its browsers signed out (identities cached on connections and
        #: issued before that are no longer taken)
        self.signed_out: dict[str, float] = {}
        #: install on the browser listener's TLS context so early refusals find their session
        self.server_names = ServerNames()
        #: where redirect chains from other sites were sent (they may land there too)
        self.landings = Landings()
        #: browser connections bound to each session (to end them when the session ends)
        self._bound: dict[str, set[_BrowserConnection]] = {}
        #: the customer's idle timeout, per session (ends it through the directory)
        self.idle = IdleWatch(clock, self._end_idle)
        subscribe = getattr(directory, "add_session_end_listener", None)
        if callable(subscribe):
            # the tunnel registry: whoever ends a session there ends its browser side here
            subscribe(self.end_session)

    # -- session lifetime ----------------------------------------------------------------

    def session_end(self, info: SessionInfo) -> float:
        """When the session ends by the relay's clock (ticket expiry, capped at the maximum)."""
        started = self._first_seen.setdefault(info.session_id,
                                              info.started_at or self.clock.now())
        end = min(info.expires_at, started + self.config.max_session_seconds)
        if info.session_id not in self._known_end and len(self._known_end) > 10_000:
            self._prune()
        self._known_end[info.session_id] = end
        return end

    def _prune(self) -> None:
        """Forget sessions that ended over an hour ago (memory stays bounded on a long run)."""
        horizon = self.clock.now() - 3600
        for sid in [s for s, end in self._known_end.items() if end < horizon]:
            self._known_end.pop(sid, None)
            self._first_seen.pop(sid, None)
            self._ended.pop(sid, None)
            self.signed_out.pop(sid, None)

    def mark_ended(self, session_id: str) -> None:
        self._ended.setdefault(session_id, self.clock.now())

    async def _end_idle(self, session_id: str, reason: str) -> None:
        """The idle timeout passed: close the tunnel (its end listener cuts the browsers)."""
        close = getattr(self.directory, "close_session", None)
        if callable(close):
            await close(session_id, reason)
        await self.end_session(session_id, reason)

    async def end_session(self, session_id: str,
                          reason: str = "the Remote Technician session ended") -> None:
        """End every browser connection of a session now (revoked, closed early or expired).

        Open WebSockets get close 1008 both ways and ``websocket_close_grace`` to answer; every
        connection is then cut, like at the session's expiry. The tunnel registry calls this
        before it drops the session's tunnel, so the closes still reach the device.
        """
        self.mark_ended(session_id)
        connections = list(self._bound.get(session_id, ()))
        if connections:
            await asyncio.gather(*(c.end(reason) for c in connections),
                                 return_exceptions=True)

    def _bind(self, session_id: str, connection: _BrowserConnection) -> None:
        self._bound.setdefault(session_id, set()).add(connection)

    def _unbind(self, session_id: str, connection: _BrowserConnection) -> None:
        bound = self._bound.get(session_id)
        if bound is not None:
            bound.discard(connection)
            if not bound:
                del self._bound[session_id]

    async def missing_session_page(self, session_id: str,
                                   cookie_header: bytes | None = None) -> str:
        """Which page a session id without a live tunnel gets.

        Ended (expired here, closed early, or ended at the portal) → "ended"; known and not yet
        at its end → the agent's tunnel is down, "device unreachable"; never seen → "not found",
        unless the browser holds a valid session cookie for it and the portal says it is live:
        this relay restarted and the agent's tunnel is on its way back → 503 "reconnecting"
        (the page retries).
        """
        closed = getattr(self.directory, "is_closed", None)
        if session_id in self._ended or (callable(closed) and closed(session_id)):
            return "session_ended"
        end = self._known_end.get(session_id)
        if end is not None:
            if self.clock.now() >= end:
                self.mark_ended(session_id)
                return "session_ended"
            if self.sessions is not None:
                # the tunnel is gone: ask afresh (at most twice a second) whether the session
                # was ended at the portal, so *End* shows "ended" rather than "unreachable"
                facts = await self.sessions.facts(session_id, max_age=0.5)
                if facts is not None and not facts.live:
                    self.mark_ended(session_id)
                    return "session_ended"
            return "device_unreachable"
        if cookie_header and self.sessions is not None and self.auth.identify(
                session_id, cookie_header) is not None:
            facts = await self.sessions.facts(session_id, max_age=0.5)
            if facts is not None and facts.live:
                return "reconnecting"
        return "session_not_found"

    # -- connection loop -----------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one browser connection until it closes, times out or its session ends."""
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets this only for sockets it made with proto=IPPROTO_TCP; without it,
            # a response head and its body meet Nagle + delayed ACK: a 40 ms stall each
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _BrowserConnection(self, reader, writer)
        connection.task = asyncio.current_task()
        try:
            await connection.serve()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        except h11.ProtocolError as exc:
            # e.g. a device answering 101 to a request that asked for no upgrade
            log.warning("browser connection dropped: HTTP framing error: %s",
                        safe_text(exc, limit=300))
        except asyncio.CancelledError:
            if not connection.expired:
                raise
            # the session ended: the watchdog cut this connection on purpose
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            # a bug: never let it end the relay's accept loop's task unlogged
            log.exception("browser connection for session %s failed unexpectedly",
                          connection.session.session_id if connection.session else "-")
        finally:
            await connection.close()

    def log(self, exchange: _Exchange) -> None:
        """Record ``exchange`` (its completion, if it was begun); raises
        :class:`AuditLogUnavailable` when the spool cannot take it."""
        if exchange.logged or self.access_log is None:
            return
        detail = exchange.detail
        if exchange.outcome == "refused":
            refusals.info("refused %s %s %s: status %s, %s, client %s", exchange.session_id,
                          exchange.method[:16], log_url(exchange.url), exchange.status,
                          log_detail(detail), exchange.client)
        self.access_log.record(
            session_id=exchange.session_id, time=exchange.wall, user=exchange.user,
            method=exchange.method, url=exchange.url, status=exchange.status,
            bytes_in=exchange.bytes_in, bytes_out=exchange.bytes_out,
            duration_ms=int((time.monotonic() - exchange.started) * 1000),
            outcome=exchange.outcome, detail=detail, seq=exchange.seq, client=exchange.client)
        exchange.logged = True

    def log_or_keep(self, exchange: _Exchange) -> None:
        """Record ``exchange``; if the spool cannot take it now, keep it in memory to be
        written once the spool recovers (see :meth:`AccessLog.defer`)."""
        try:
            self.log(exchange)
        except AuditLogUnavailable:
            exchange.logged = True
            if self.access_log is not None:
                self.access_log.defer(
                    session_id=exchange.session_id, time=exchange.wall, user=exchange.user,
                    method=exchange.method, url=exchange.url, status=exchange.status,
                    bytes_in=exchange.bytes_in, bytes_out=exchange.bytes_out,
                    duration_ms=int((time.monotonic() - exchange.started) * 1000),
                    outcome=exchange.outcome, detail=exchange.detail, seq=exchange.seq,
                    client=exchange.client)

    def begin(self, exchange: _Exchange) -> None:
        """Spool ``exchange`` as forwarded (raises :class:`AuditLogUnavailable`)."""
        if self.access_log is not None and exchange.seq is None:
            exchange.seq = self.access_log.begin(
                session_id=exchange.session_id, time=exchange.wall, user=exchange.user,
                method=exchange.method, url=exchange.url, client=exchange.client)

    @property
    def audit_available(self) -> bool:
        return self.access_log is None or self.access_log.available


class _BrowserConnection:
    """One browser connection: the read → feed → dispatch loop and its cleanup."""

    def __init__(self, proxy: RelayProxy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.config = proxy.config
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER,
                                   max_incomplete_event_size=self.config.max_header_bytes)
        self.session: SessionInfo | None = None
        self.upstream: _Upstream | None = None
        self._watchdog: asyncio.Task[None] | None = None
        #: the task serving this connection (cancelled by the watchdog at the session's end)
        self.task: asyncio.Task[Any] | None = None
        self.expired = False
        #: the request being answered; logged before its response's last bytes leave
        self._exchange: _Exchange | None = None
        self._rewriter: LanRewriter | None = None
        self._redirects: RedirectPolicy | None = None
        #: the request being forwarded is a navigation from another site (let in)
        self._foreign_navigation = False
        #: the device's ``Location`` the relay passed on in the current response
        self._location: str | None = None
        #: browser-bound bytes held back by _send until _flush
        self._out: list[bytes] = []
        self._out_size = 0
        #: the last Host header seen and the session it names (browsers repeat it)
        self._host: tuple[bytes, str | None] | None = None
        #: the last session cookie header verified and whom it names (until it expires)
        self._identity: tuple[bytes, Identity] | None = None
        #: per-session strings, computed once the connection is bound to its session
        self._origins: _SessionStrings | None = None
        #: the current request's headers: the first value for each lower-case name
        self._fields: dict[bytes, bytes] = {}
        peer = writer.get_extra_info("peername")
        #: the browser's address, for refusals in the log and sign-in limits
        self.client: str | None = str(peer[0]) if isinstance(peer, tuple) and peer else None

        #: the WebSocket upgrade being forwarded: the browser's handshake and the relay's key
        self._handshake: tuple[BrowserHandshake, bytes] | None = None
        #: the WebSocket this connection became, once switched
        self.websocket: WebSocketProxy | None = None
        self._ending: asyncio.Task[None] | None = None
        #: the session's device-cookie namespace (:mod:`.device_cookies`)
        self._device_cookies: DeviceCookies | None = None
        #: bytes of the current response already written to the browser
        self._response_written = 0
        #: the browser connection was aborted on purpose (nothing more may be written)
        self.aborted = False

    async def close(self) -> None:
        if self.session is not None:
            self.proxy._unbind(self.session.session_id, self)
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._out and not self.expired and not self.aborted:
            with contextlib.suppress(Exception):
                await self._flush()
        await self._drop_upstream()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    async def _drop_upstream(self) -> None:
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            with contextlib.suppress(Exception):
                await upstream.stream.aclose()

    # -- low-level I/O -------------------------------------------------------------------

    async def _write(self, data: bytes | None) -> None:
        if data:
            self.writer.write(data)
            transport = self.writer.transport
            if transport.get_write_buffer_size() > 0 or transport.is_closing():
                # asyncio.timeout, not wait_for: no task per call on the hot path
                async with asyncio.timeout(self.config.body_timeout):
                    await self.writer.drain()

    async def _send(self, event: Any, more_headers: bytes = b"") -> int:
        """Serialise ``event`` for the browser; response heads and body pieces are held back.

        They are written together (one TLS record, one ``send``) at the end of the message,
        once ``read_size`` bytes are held, or before the proxy waits for the device
        (:meth:`_flush`); so a small page costs one write instead of three.

        ``more_headers`` (serialised, already valid header lines) go into a response head
        after the ones h11 wrote (see :meth:`_relay_response`).
        """
        data = self.conn.send(event) or b""
        if more_headers:
            data = _with_header_lines(data, more_headers)
        if isinstance(event, h11.Response):
            self._response_written = 0
        if isinstance(event, h11.EndOfMessage) and self._exchange is not None:
            # the entry is in the spool before the browser can hold the complete response,
            # so a relay killed right after answering has still recorded the request
            try:
                self.proxy.log(self._exchange)
            except AuditLogUnavailable:
                await self._audit_refusal(self._exchange)
        if data:
            self._out.append(data)
            self._out_size += len(data)
        if self._out_size >= self.config.read_size or not isinstance(
                event, _HELD_EVENTS):
            await self._flush()
        return len(data)

    async def _flush(self) -> None:
        """Write what :meth:`_send` held back (before any wait on the device or the browser)."""
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self._response_written += len(data)
            await self._write(data)

    async def _audit_refusal(self, exchange: _Exchange) -> None:
        """The spool could not record ``exchange``: its response is not delivered.

        Nothing of it sent yet → a 503 "the audit log is unavailable" page (written raw: the
        h11 state is abandoned with the connection); some of it sent → the connection is
        aborted, so the browser cannot take a partial body for a whole one. Raises
        :class:`_CloseConnection`.
        """
        self._out.clear()
        self._out_size = 0
        exchange.outcome = "error"
        exchange.detail = outcomes.AUDIT_LOG_UNAVAILABLE
        if self._response_written == 0:
            exchange.status = 503
            exchange.bytes_out = 0
            self.writer.write(outcomes.raw_page(
                "audit_log_unavailable", portal_url=self.config.portal_url,
                session_host=self.config.session_host(exchange.session_id)).data)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.header_timeout):
                    await self.writer.drain()
        else:
            self._reset_transport()
        self.proxy.log_or_keep(exchange)
        raise _CloseConnection

    async def _abort(self) -> None:
        """End the browser connection as failed: what was held is sent, then a reset (a TCP
        RST under the TLS), so the browser never sees a short body as a complete one."""
        with contextlib.suppress(Exception):
            await self._flush()
            async with asyncio.timeout(1.0):
                # what the device sent is passed on before the reset (which drops unsent data)
                await self.writer.drain()
                for _ in range(100):  # the kernel has no event for "sent": poll, bounded
                    if not (self.writer.transport.get_write_buffer_size() or _unsent(
                            self.writer.get_extra_info("socket"))):
                        break
                    await asyncio.sleep(0.01)
        self._reset_transport()

    def _reset_transport(self) -> None:
        """Abort the browser's connection with a TCP RST (SO_LINGER 0): TLS has no way to
        say "incomplete", and a plain close could pass for the end of a close-delimited body."""
        self.aborted = True
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def _next_request(self, first: bool) -> h11.Request | None:
        """The next request head, or None when the browser closed or went idle."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(exc)
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed, or PAUSED after a protocol switch
            if deadline is None and self.conn.trailing_data[0]:
                deadline = loop.time() + self.config.header_timeout
            if deadline is not None:
                timeout = deadline - loop.time()
            else:
                timeout = self.config.header_timeout if first else self.config.idle_timeout
            try:
                if timeout <= 0:
                    raise TimeoutError
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(self.config.read_size)
            except TimeoutError:
                if deadline is not None:
                    await self._simple_error(408, "bad_request",
                                             "The request head did not arrive in time.")
                return None
            if deadline is None and data:
                deadline = loop.time() + self.config.header_timeout
            self.conn.receive_data(data)

    async def _receive_body_event(self) -> Any:
        """The next body event of the browser's request (Data / EndOfMessage)."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(self.config.body_timeout):
                data = await self.reader.read(self.config.read_size)
            self.conn.receive_data(data)

    async def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
        await self._simple_error(status, "bad_request",
                                 f"The request was malformed and refused: {exc}.")

    async def _simple_error(self, status: int, kind: str, detail: str,
                            request: h11.Request | None = None) -> None:
        """A relay page on a connection that is then closed (no session context needed)."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        self._log_refusal(status, kind, detail, request)
        page = render(kind, portal_url=self.config.portal_url, detail=detail, status=status)
        host = self.config.session_host(self.session.session_id) if self.session else (
            self.config.domain)
        headers = [(b"Content-Type", b"text/html; charset=utf-8"),
                   (b"Cache-Control", b"no-store"), (b"Connection", b"close"),
                   (b"Content-Length", str(len(page.body)).encode()),
                   *security_headers(host)]
        with contextlib.suppress(Exception):
            await self._send(h11.Response(status_code=status, headers=headers))
            await self._send(h11.Data(data=page.body))
            await self._send(h11.EndOfMessage())

    def _log_refusal(self, status: int, kind: str, detail: str,
                     request: h11.Request | None) -> None:
        """Log a refusal made before the request named a session: under the session the
        connection's ``Host`` or TLS server name names, else in the relay's own log."""
        session_id = self._host[1] if self._host is not None else None
        if session_id is None:
            server_name = self.proxy.server_names.name_of(
                self.writer.get_extra_info("ssl_object"))
            if server_name is not None:
                session_id = self.config.session_id_for_host(
                    server_name.encode("ascii", "replace"))
        method = request.method.decode("latin-1") if request is not None else "-"
        url = request.target.decode("latin-1") if request is not None else "-"
        if session_id is None or self.proxy.access_log is None:
            log.warning("refused %d (%s) from %s before any session was named: %s %s: %s",
                        status, kind, self.client, safe_text(method, limit=32),
                        safe_text(url, limit=200), safe_text(detail, limit=300))
            return
        self.proxy.log(_Exchange(
            session_id=session_id, method=method, url=url, started=time.monotonic(),
            wall=self.proxy.clock.now(), status=status, outcome="refused",
            detail=f"{kind} before parsing, client {self.client}: {detail}",
            client=self.client))

    # -- request loop --------------------------------------------------------------------

    async def serve(self) -> None:
        first = True
        while True:
            request = await self._next_request(first)
            if request is None:
                return
            first = False
            try:
                await self._handle(request)
            except _CloseConnection:
                return
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                self.conn.start_next_cycle()
            else:
                return

    async def _handle(self, request: h11.Request) -> None:
        method = request.method.upper()
        target = request.target.decode("latin-1")
        head_size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if head_size > self.config.max_header_bytes:
            # h11 caps a head still arriving; one that came in a single read is measured here
            await self._simple_error(431, "bad_request", (
                f"The request head is {head_size} bytes; the limit is "
                f"{self.config.max_header_bytes}."), request)
            raise _CloseConnection
        # the first value of each header by lower-case name, looked up below instead of
        # scanning the head once per header name
        self._fields = fields = _first_values(request.headers)
        host = fields.get(b"host") or b""
        if self._host is None or self._host[0] != host:
            self._host = (host, self.config.session_id_for_host(host))
        session_id = self._host[1]
        if session_id is None:
            await self._simple_error(404, "not_a_session_host", "", request)
            raise _CloseConnection
        exchange = _Exchange(session_id=session_id, method=method.decode("latin-1"),
                             url=target, started=time.monotonic(), wall=self.proxy.clock.now(),
                             client=self.client)
        self._exchange = exchange
        try:
            await self._handle_session_request(request, session_id, exchange)
        except asyncio.CancelledError:
            if self.websocket is not None and self.websocket.bridge.ended:
                # cut after its grace: the entry still says the close 1008 it got
                exchange.outcome, exchange.detail = outcomes.websocket_outcome(
                    self.websocket.stats, ended=True)
            else:
                exchange.outcome, exchange.detail = "ended", "session_expired_mid_request"
            raise
        except _CloseConnection:
            raise
        except DeviceStreamError as exc:
            # the device side failed (a reset tunnel stream, the agent gone), not the browser
            await self._device_failed(exchange, outcomes.device_failure(exc))
            raise _CloseConnection from exc
        except (ConnectionError, OSError, TimeoutError) as exc:
            if self.expired:
                exchange.outcome, exchange.detail = "ended", "session_expired_mid_request"
            elif exchange.outcome == "ok":
                exchange.outcome = outcomes.CLIENT_GONE
                exchange.detail = exchange.detail or f"{type(exc).__name__}: {exc}"[:200]
            raise _CloseConnection from exc
        except h11.ProtocolError as exc:
            await self._device_failed(exchange, f"bad_device_response: {exc}"[:300])
            raise _CloseConnection from exc
        except Exception as exc:
            log.exception("session %s: request %s %s failed unexpectedly", session_id,
                          safe_text(exchange.method, limit=32), safe_text(target, limit=200))
            await self._device_failed(exchange, outcomes.internal(exc), internal=True)
            raise _CloseConnection from exc
        finally:
            self._exchange = None
            self.proxy.log_or_keep(exchange)

    async def _device_failed(self, exchange: _Exchange, detail: str, *,
                             internal: bool = False) -> None:
        """A failure after forwarding: before the response head → a 502 (500 if ours) page;
        after it → the browser connection is aborted. The entry is ``error`` with ``detail``."""
        exchange.outcome, exchange.detail = "error", detail
        kind = "internal_error" if internal else "bad_gateway"
        text = None if internal else outcomes.DEVICE_FAILED_TEXT
        if self.conn.our_state is h11.SEND_RESPONSE:
            with contextlib.suppress(_CloseConnection):
                await self._page(exchange, kind, close=True, outcome="error", detail=text)
            return
        if not self._response_written:
            # the head is serialised but still held: replace it with the error page
            self._out.clear()
            self._out_size = 0
            page = outcomes.raw_page(kind, portal_url=self.config.portal_url,
                                     session_host=self.config.session_host(exchange.session_id),
                                     detail=text)
            exchange.status, exchange.bytes_out = page.status, 0
            exchange.detail = detail
            with contextlib.suppress(Exception):
                self.writer.write(page.data)
                async with asyncio.timeout(self.config.header_timeout):
                    await self.writer.drain()
            return
        await self._abort()

    async def _handle_session_request(self, request: h11.Request, session_id: str,
                                      exchange: _Exchange) -> None:
        if self.session is not None and self.session.session_id != session_id:
            await self._page(exchange, "misdirected", close=True)
            return
        headers = self._fields
        if b"content-length" in headers and b"transfer-encoding" in headers:
            await self._page(exchange, "bad_request", close=True, detail=(
                "The request had both Content-Length and Transfer-Encoding; send one."))
            return
        target = request.target
        if not target.startswith(b"/") and not (request.method == b"OPTIONS" and target == b"*"):
            await self._page(exchange, "bad_request", close=True, detail=(
                "Only origin-form request targets (a path) are accepted."))
            return
        refusal = check_target(target) or check_header_fields(request.headers.raw_items())
        if refusal is not None:
            exchange.detail = refusal.code
            await self._page(exchange, "bad_request", close=True, detail=refusal.message)
            return
        info = self.proxy.directory.lookup(session_id)
        now = self.proxy.clock.now()
        if info is None or session_id in self.proxy._ended:
            await self._page(exchange, await self.proxy.missing_session_page(
                session_id, headers.get(b"cookie")), close=True)
            return
        if now >= self.proxy.session_end(info) or session_id in self.proxy._ended:
            # expired, or ended here (end_session) before its tunnel is gone
            self.proxy.mark_ended(session_id)
            await self._page(exchange, "session_ended", close=True)
            return
        if self.session is None:
            self.session = info
            self.proxy._bind(session_id, self)
            self._watchdog = asyncio.create_task(self._expire_at(self.proxy.session_end(info)))
        cookie_header = headers.get(b"cookie")
        path = target.decode("latin-1")
        if not self.proxy.audit_available:
            # fail closed: no sign-in starts and nothing is forwarded while the spool is down
            # (this page's own entry is the probe that notices the spool is back)
            await self._page(exchange, "audit_log_unavailable", close=True, outcome="error",
                             detail=None)
            return
        if path.startswith(RELAY_PATH_PREFIX):
            await self._relay_path(request, info, path, cookie_header, exchange)
            return
        identity = self._identify(session_id, cookie_header, now)
        if identity is None:
            if await self._sign_in_refused(exchange):
                return
            if request.method in (b"GET", b"HEAD"):
                # another site must not start a sign-in that returns to a deep path either
                refusal = check_navigation(headers, target,
                                           self.proxy.landings.allowed(session_id, path, now))
                if refusal is not None:
                    exchange.detail = refusal.code
                    await self._page(exchange, "cross_site_navigation", close=False,
                                     detail=refusal.message, continue_to=path)
                    return
                await self._respond(exchange, self.proxy.auth.begin(
                    session_id, path, client=self.client), close=False)
            else:
                await self._page(exchange, "not_signed_in", close=True)
            return
        exchange.user = identity.email
        websocket = b"websocket" in _tokens(headers.get(b"upgrade")) and (
            b"upgrade" in _tokens(headers.get(b"connection")))
        refusal = check_request_site(request.method, headers,
                                     self._strings(info).origin, websocket=websocket)
        if refusal is not None:
            exchange.detail = refusal.code
            await self._page(exchange, "cross_site_refused", close=True, detail=refusal.message,
                             outcome="refused")
            return
        landed = self.proxy.landings.allowed(session_id, path, now)
        if not websocket and (refusal := check_navigation(headers, target, landed)) is not None:
            exchange.detail = refusal.code
            await self._page(exchange, "cross_site_navigation", close=False,
                             detail=refusal.message, continue_to=path)
            return
        self._foreign_navigation = not websocket and foreign_navigation(headers)
        self._handshake = None
        if self.proxy.idle.expired(session_id):  # its timer has not run yet: not revived
            await self.proxy._end_idle(session_id, "the customer's idle timeout passed")
            await self._page(exchange, "session_ended", close=True)
            return
        self.proxy.idle.touch(session_id, info.policy.idle_timeout)
        if (why := info.policy.refusal(request.method, websocket=websocket,
                                       fields=headers)) is not None:
            exchange.detail = "read_only"
            await self._page(exchange, "read_only_refused", close=True, detail=why,
                             outcome="refused")
            return
        if websocket:
            handshake = check_browser_request(request.method, request.http_version,
                                              request.headers)
            if isinstance(handshake, HandshakeRefused):
                await self._refuse_handshake(exchange, handshake)
                return
            self._handshake = (handshake, b"")
        await self._forward(request, info, identity, exchange, websocket)

    async def _refuse_handshake(self, exchange: _Exchange, refused: HandshakeRefused) -> None:
        exchange.detail = f"websocket_handshake_refused: {refused.reason}"[:300]
        page = render("bad_request", portal_url=self.config.portal_url,
                      detail=f"The WebSocket handshake was refused: {refused.reason}.",
                      status=refused.status)
        await self._respond(exchange, RelayResponse(
            status=refused.status, body=page.body, outcome="refused", detail=exchange.detail,
            headers=[(b"Content-Type", b"text/html; charset=utf-8"),
                     (b"Cache-Control", b"no-store"), *refused.headers]), close=True)

    def _identify(self, session_id: str, cookie_header: bytes | None,
                  now: float) -> Identity | None:
        """The session cookie's identity; a header verified on this connection is not
        verified again while its identity lasts (the check is a pure function of the header,
        the session and the time)."""
        cached = self._identity
        if cached is not None and cookie_header is not None and cached[0] == cookie_header \
                and cached[1].session_id == session_id and now < cached[1].expires_at \
                and cached[1].issued_at > self.proxy.signed_out.get(session_id, -1.0):
            return cached[1]
        identity = self.proxy.auth.identify(session_id, cookie_header)
        self._identity = (cookie_header, identity) if identity is not None and \
            cookie_header is not None else None
        return identity

    def _cookie_space(self, session_id: str) -> DeviceCookies:
        space = self._device_cookies
        if space is None or space.session_id != session_id:
            space = self._device_cookies = DeviceCookies(session_id)
        return space

    def _shim_injector(self, content_type: str, session_id: str) -> HtmlShimInjector | None:
        """The ``document.cookie`` shim for an HTML response, only for a navigation
        (``Sec-Fetch-Dest`` document/iframe/frame): a fragment fetched by script, or a
        response to a client that does not say, stays byte for byte what the device sent."""
        if content_type.split(";", 1)[0].strip().lower() != "text/html":
            return None
        dest = self._fields.get(b"sec-fetch-dest")
        if dest is None or dest.strip().lower() not in _DOCUMENT_DESTS:
            return None
        return HtmlShimInjector(self._cookie_space(session_id).shim())

    def _strings(self, info: SessionInfo) -> _SessionStrings:
        strings = self._origins
        if strings is None or strings.session_id != info.session_id or \
                strings.device is not info.device:
            strings = self._origins = _SessionStrings.build(self.config, info)
        return strings

    async def _relay_path(self, request: h11.Request, info: SessionInfo, path: str,
                          cookie_header: bytes | None, exchange: _Exchange) -> None:
        route = path.split("?", 1)[0]
        if route == "/.ewsgate/callback" and request.method == b"GET":
            if await self._sign_in_refused(exchange):
                return
            response = await self.proxy.auth.callback(
                info.session_id, path, cookie_header, self.proxy.session_end(info))
            if response.status == 303 and foreign_navigation(self._fields):
                # back to the page first asked for, at the end of a chain through the portal
                target = dict(response.headers).get(b"Location", b"/").decode("latin-1")
                self.proxy.landings.allow(info.session_id, target, self.proxy.clock.now())
            await self._respond(exchange, response, close=False)
            return
        if route == LOGOUT_PATH:
            await self._sign_out(info, cookie_header, exchange)
            return
        if route == REFUSED_PATH:
            exchange.detail = "navigation_refused_page"
            await self._page(exchange, "navigation_refused", close=False)
            return
        await self._page(exchange, "session_not_found", close=False, status=404,
                         detail="This relay address does not exist.")

    async def _sign_in_refused(self, exchange: _Exchange) -> bool:
        """Refuse a new sign-in while the portal is unreachable (it may have revoked it)."""
        check = self.proxy.sign_in_refusal
        reason = check() if check is not None else None
        if reason is None:
            return False
        exchange.detail = "portal_unreachable"
        await self._page(exchange, "portal_unreachable", close=True, detail=reason,
                         outcome="refused")
        return True

    async def _sign_out(self, info: SessionInfo, cookie_header: bytes | None,
                        exchange: _Exchange) -> None:
        if not sign_out_allowed(self._fields.get(b"sec-fetch-site")):
            exchange.detail = "cross_site_sign_out_refused"
            await self._page(exchange, "cross_site_refused", close=True, outcome="refused",
                             detail="Only the session's own pages may sign you out of it.")
            return
        self.proxy.auth.sign_out(info.session_id)
        self.proxy.signed_out[info.session_id] = self.proxy.clock.now()
        self._identity = None
        exchange.detail = "signed_out"
        await self._page(exchange, "signed_out", close=True, outcome="auth",
                         extra_headers=clearing_headers(cookie_header))

    # -- answering from the relay --------------------------------------------------------

    async def _page(self, exchange: _Exchange, kind: str, *, close: bool,
                    detail: str | None = None, status: int | None = None,
                    outcome: str | None = None, continue_to: str | None = None,
                    extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        page = render(kind, portal_url=self.config.portal_url, detail=detail, status=status,
                      continue_to=continue_to)
        headers = [(b"Content-Type", b"text/html; charset=utf-8"),
                   (b"Cache-Control", b"no-store"), *(extra_headers or ())]
        if kind == "session_ended" and extra_headers is None:
            headers += clearing_headers(self._fields.get(b"cookie"))
        if kind == "not_signed_in":
            headers.append((b"WWW-Authenticate", b'Cookie realm="Remote Technician"'))
        if page.status == 503:
            headers.append((b"Retry-After", str(outcomes.RETRY_AFTER_SECONDS).encode()))
        response = RelayResponse(status=page.status, headers=headers, body=page.body,
                                 outcome=outcome or _outcome_for(kind),
                                 detail=exchange.detail or page.code)
        await self._respond(exchange, response, close=close)

    async def _respond(self, exchange: _Exchange, response: RelayResponse, *,
                       close: bool) -> None:
        """Send a relay-made response; close if the request body was not read."""
        exchange.status = response.status
        exchange.outcome = response.outcome
        exchange.detail = response.detail
        if exchange.user is None and response.user is not None:
            exchange.user = response.user
        session_host = self.config.session_host(exchange.session_id)
        must_close = close or self.conn.their_state is not h11.DONE
        headers = [*response.headers, (b"Content-Length", str(len(response.body)).encode()),
                   *security_headers(session_host)]
        if must_close:
            headers.append((b"Connection", b"close"))
        if self.conn.our_state is not h11.SEND_RESPONSE:
            raise _CloseConnection
        await self._send(h11.Response(status_code=response.status, headers=headers))
        if response.body:
            await self._send(h11.Data(data=response.body))
            exchange.bytes_out += len(response.body)
        await self._send(h11.EndOfMessage())
        if must_close:
            raise _CloseConnection

    async def _expire_at(self, moment: float) -> None:
        await self.proxy.clock.sleep_until(moment)
        await self.end("the Remote Technician session expired")

    async def end(self, reason: str) -> None:
        """The session ended: close a WebSocket with 1008 (short grace), then cut the
        connection. Idempotent: a second caller waits for the first."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end(reason))
        await asyncio.shield(self._ending)

    async def _end(self, reason: str) -> None:
        if self.session is not None:
            self.proxy.mark_ended(self.session.session_id)
        self.expired = True
        if self.websocket is not None:
            await self.websocket.end(reason)
            if self.task is not None and not self.task.done():
                # let the connection log the WebSocket and close by itself
                await asyncio.wait({self.task}, timeout=self.config.websocket_close_grace)
        # cut the browser side at once; cancellation alone can be lost in a wait_for race
        self.writer.transport.abort()
        for _ in range(100):
            if self.task is None or self.task.done():
                return
            self.task.cancel()
            await asyncio.sleep(0.05)

    # -- forwarding ----------------------------------------------------------------------

    def _device_request_head(self, request: h11.Request, info: SessionInfo,
                             websocket: bool) -> tuple[h11.Request, bytes]:
        """The request for the device: an h11 event with the headers h11 acts on (``Host``,
        framing, the WebSocket upgrade) and the other header lines, serialised.

        h11 keeps the device connection's state from the event; the other lines are the
        browser's (h11 validated them when it parsed the request) or composed here from
        validated parts, so they are not validated and normalised a second time.
        """
        headers = request.headers
        connection_tokens = _tokens(self._fields.get(b"connection"))
        strings = self._strings(info)
        origin, device_origin = strings.origin_bytes, strings.device_origin
        lines: list[bytes] = []
        origin_seen = referer = cookie = length = chunked = None
        for name, value, lower in _raw_items(headers):
            if lower in _CLIENT_STRIPPED or lower in _HOP_BY_HOP:
                # the first of each, as before (h11 refused conflicting lengths already)
                if lower == b"origin" and origin_seen is None:
                    origin_seen = value
                elif lower == b"referer" and referer is None:
                    referer = value
                elif lower == b"cookie" and cookie is None:
                    cookie = value
                elif lower == b"content-length" and length is None:
                    length = value
                elif lower == b"transfer-encoding":
                    chunked = b"chunked"
                continue
            if lower in connection_tokens or stripped(lower) or lower.startswith(
                    b"sec-websocket-"):
                continue
            lines += (name, b": ", value, b"\r\n")
        framing: list[tuple[bytes, bytes]] = [(b"Host", strings.device_host)]
        if websocket and self._handshake is not None:
            framing += [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
            # the relay's own handshake with the device: a fresh key, no extensions
            device_key, handshake_lines = device_handshake_lines(self._handshake[0])
            self._handshake = (self._handshake[0], device_key)
            lines.append(handshake_lines)
        if origin_seen == origin:
            lines += (b"Origin: ", device_origin, b"\r\n")
        if referer and (referer == origin or referer.startswith(origin + b"/")):
            lines += (b"Referer: ", device_origin, referer[len(origin):], b"\r\n")
        # only this session's namespaced device cookies, renamed back (:mod:`.device_cookies`)
        cookie = self._cookie_space(info.session_id).for_device(cookie, request.target)
        if cookie:
            lines += (b"Cookie: ", cookie, b"\r\n")
        lines.append(b"Accept-Encoding: gzip, deflate\r\n")
        if length is not None:
            framing.append((b"Content-Length", length))
        elif chunked is not None:
            framing.append((b"Transfer-Encoding", b"chunked"))
        event = h11.Request(method=request.method, target=request.target, headers=framing)
        return event, b"".join(lines)

    async def _open_upstream(self, info: SessionInfo) -> _Upstream:
        if self.upstream is not None:
            if self.upstream.conn.our_state is h11.IDLE and (
                    self.upstream.conn.their_state is h11.IDLE):
                return self.upstream
            await self._drop_upstream()
        stream = await self.proxy.directory.open_stream(info.session_id,
                                                        info.device.primary_index)
        self.upstream = _Upstream(stream)
        return self.upstream

    async def _forward(self, request: h11.Request, info: SessionInfo, identity: Identity,
                       exchange: _Exchange, websocket: bool) -> None:
        device_request, device_lines = self._device_request_head(request, info, websocket)
        retry = request.method in (b"GET", b"HEAD", b"OPTIONS") and not websocket
        try:
            self.proxy.begin(exchange)
        except AuditLogUnavailable:
            await self._audit_refusal(exchange)
        while True:
            reused = self.upstream is not None
            try:
                upstream = await self._open_upstream(info)
            except UpstreamUnavailable as exc:
                exchange.detail = f"device_unreachable: {exc}"[:300]
                await self._page(exchange, "device_unreachable", close=True, outcome="error")
                return
            try:
                await upstream.stream.write(
                    _with_header_lines(upstream.conn.send(device_request) or b"", device_lines))
            except (ConnectionError, OSError):
                await self._drop_upstream()
                if reused and retry:
                    continue  # a kept-alive device connection had closed meanwhile
                raise
            if self.conn.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            pump: asyncio.Future[None]
            if _has_body(self._fields):
                pump = asyncio.ensure_future(self._pump_request_body(upstream, exchange))
            else:
                # no body (most GETs): finish the request inline, no task and no race
                await self._pump_request_body(upstream, exchange)
                pump = asyncio.get_running_loop().create_future()
                pump.set_result(None)
            try:
                head = await self._response_head(upstream, exchange, pump)
                if head is None and reused and retry:
                    # a kept-alive device connection closed before answering: once more, fresh
                    await self._drop_upstream()
                    exchange.detail, retry = None, False
                    continue
                if head is None:
                    await self._page(exchange, "bad_gateway", close=True, outcome="error",
                                     detail=outcomes.DEVICE_FAILED_TEXT if (
                                         exchange.detail or "").startswith("device_reset")
                                     else "Its response could not be read or parsed.")
                await self._relay_response(upstream, info, exchange, pump, head)
                return
            finally:
                if not pump.done():
                    pump.cancel()
                    with contextlib.suppress(BaseException):
                        await pump
                    await self._drop_upstream()

    async def _pump_request_body(self, upstream: _Upstream, exchange: _Exchange) -> None:
        while True:
            event = await self._receive_body_event()
            if isinstance(event, h11.Data):
                exchange.bytes_in += len(event.data)
                await upstream.stream.write(upstream.conn.send(h11.Data(data=event.data)) or b"")
            elif isinstance(event, h11.EndOfMessage):
                tail = upstream.conn.send(h11.EndOfMessage())
                if tail:  # the last chunk of a chunked body; nothing for a known length
                    await upstream.stream.write(tail)
                return
            else:
                raise ConnectionResetError("the browser closed the connection mid-request")

    async def _upstream_event(self, upstream: _Upstream, wait: float) -> Any:
        while True:
            event = upstream.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._out:
                try:
                    await self._flush()  # never hold the browser's bytes while waiting
                except (ConnectionError, OSError, TimeoutError) as exc:
                    raise _BrowserGone(str(exc)) from exc  # not the device's failure
            async with asyncio.timeout(wait):
                data = await upstream.stream.read(self.config.read_size)
            upstream.conn.receive_data(data)

    async def _read_head(self, upstream: _Upstream) -> Any:
        while True:
            event = await self._upstream_event(upstream, self.config.response_timeout)
            if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
                continue
            return event

    async def _response_head(self, upstream: _Upstream, exchange: _Exchange,
                             pump: asyncio.Future[None]) -> Any:
        """The device's response head, racing the request body pump; None after an error.

        A request body the browser framed badly (a bad chunk size) fails the pump first: the
        browser gets a 400 and the device connection is dropped.
        """
        head_task: asyncio.Task[Any] | None = None
        try:
            if pump.done() and pump.exception() is None:
                # the body is already sent: nothing to race, no task
                return await self._read_head(upstream)
            head_task = asyncio.create_task(self._read_head(upstream))
            done, _ = await asyncio.wait({head_task, pump}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done and pump.exception() is not None and not head_task.done():
                error = pump.exception()
                if isinstance(error, DeviceStreamError):
                    exchange.detail = outcomes.device_failure(error)
                    return None
                if isinstance(error, h11.RemoteProtocolError):
                    exchange.detail = f"bad_request_body: {error}"[:300]
                    await self._page(exchange, "bad_request", close=True,
                                     detail=f"The request body was malformed: {error}.")
                    return None
                exchange.outcome, exchange.detail = outcomes.CLIENT_GONE, (
                    "browser_closed_mid_request")
                raise _CloseConnection
            return await head_task
        except TimeoutError:
            exchange.detail = "device_timeout"
            await self._page(exchange, "device_timeout", close=True, outcome="error")
            return None
        except _BrowserGone:
            raise
        except DeviceStreamError as exc:
            exchange.detail = outcomes.device_failure(exc)
            return None
        except (h11.RemoteProtocolError, ConnectionError, OSError) as exc:
            exchange.detail = f"bad_device_response: {exc}"[:300]
            return None
        finally:
            if head_task is not None and not head_task.done():
                head_task.cancel()
                with contextlib.suppress(BaseException):
                    await head_task

    async def _relay_response(self, upstream: _Upstream, info: SessionInfo,
                              exchange: _Exchange, pump: asyncio.Future[None], event: Any
                              ) -> None:
        if not isinstance(event, (h11.Response, h11.InformationalResponse)):
            exchange.detail = "device_closed_without_response"
            await self._page(exchange, "bad_gateway", close=True, outcome="error",
                             detail=_DETAIL_TEXT[exchange.detail])
            return
        if self._rewriter is None:
            self._rewriter = LanRewriter(info.device, self.config.session_host(info.session_id))
            self._redirects = RedirectPolicy(
                session_name=f"s-{info.session_id}.{self.config.domain}",
                session_port=self.config.public_port, relay_domain=self.config.domain)
        rewriter = self._rewriter
        if isinstance(event, h11.InformationalResponse):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, self.config.header_timeout)
            if self._handshake is None:
                raise h11.RemoteProtocolError("the device switched protocols unasked")
            handshake, device_key = self._handshake
            switch = check_device_switch(event.headers, device_key, handshake.protocols)
            if isinstance(switch, str):
                # no splice: the device's bytes after this 101 never reach the browser
                await self._drop_upstream()
                exchange.detail = f"bad_websocket_switch: {switch}"[:300]
                await self._page(exchange, "bad_gateway", close=True, outcome="refused",
                                 detail=f"It did not complete the WebSocket handshake: {switch}.")
                return
            await self._switch_protocols(upstream, browser_switch_headers(handshake, switch),
                                         exchange)
            return
        framing, lines, transform = self._response_headers(event, rewriter, exchange)
        if lines is None:
            await self._page(exchange, "bad_gateway", close=True, outcome="refused",
                             detail=_REFUSED_RESPONSE_TEXT.get(
                                 exchange.detail or "", _REFUSED_RESPONSE_TEXT[""]))
            return
        exchange.status = event.status_code
        if self._foreign_navigation and 300 <= event.status_code < 400 and self._location:
            # the device sends a chain from another site on: let the chain land there
            landing = same_origin_path(self._strings(info).origin, exchange.url, self._location)
            if landing is not None:
                self.proxy.landings.allow(info.session_id, landing, self.proxy.clock.now())
        await self._send(h11.Response(status_code=event.status_code, headers=framing,
                                      reason=event.reason), lines)
        await self._stream_response_body(upstream, transform, exchange)
        if not pump.done():
            # the device answered before taking the whole body: this connection cannot continue
            raise _CloseConnection
        pump.result()
        if upstream.conn.our_state is h11.DONE and upstream.conn.their_state is h11.DONE:
            upstream.conn.start_next_cycle()
        else:
            await self._drop_upstream()

    def _response_headers(
        self, response: h11.Response, rewriter: LanRewriter, exchange: _Exchange,
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None, _BodyTransform | None]:
        """The browser's response head: the framing headers for h11 (``Content-Length``,
        when the body passes unchanged), the other header lines serialised (rewritten, then
        hardened) and the body's transform; lines are None if the response is refused.

        h11 parsed and validated the device's header lines; the values the rewriter changes
        are checked here, and the relay's own headers are one precomputed block, so the head
        is not validated and normalised again for the browser.
        """
        items = _raw_items(response.headers)
        self._location = None
        first: dict[bytes, bytes] = {}
        for _name, value, lower in items:
            first.setdefault(lower, value)
        connection_tokens = _tokens(first.get(b"connection"))
        content_type = (first.get(b"content-type") or b"").decode("latin-1")
        coding = (first.get(b"content-encoding") or b"identity").decode(
            "latin-1").strip().lower()
        transform: _BodyTransform | None = None
        policy = self._redirects
        markup = _markup(content_type)
        if markup and coding != "identity" and not BodyDecoder.supports(coding):
            # a page the relay cannot read could hide a <meta> refresh (issue 10, item 4)
            exchange.detail, exchange.outcome = "markup_in_unreadable_coding", "refused"
            return [], None, None
        if rewritable_content_type(content_type) and (
                coding == "identity" or BodyDecoder.supports(coding)):
            transform = _BodyTransform(rewriter, coding,
                                       policy.refusal if markup and policy else None,
                                       self._shim_injector(content_type, exchange.session_id))
        framing: list[tuple[bytes, bytes]] = []
        out: list[bytes] = []
        for name, value, lower in items:
            if lower in _HOP_BY_HOP or lower in connection_tokens:
                continue
            if lower == b"content-length":
                if transform is None:
                    framing.append((name, value))
                continue
            if transform is not None and lower == b"content-encoding":
                continue
            if dropped_response_header(lower):
                continue
            if lower not in _REWRITTEN_RESPONSE_HEADERS:
                out += (name, b": ", value, b"\r\n")
                continue
            text = value.decode("latin-1")
            if lower in (b"location", b"content-location"):
                text = rewriter.rewrite_location(text)
                if lower == b"location":
                    foreign = rewriter.leaves_session(text) or (
                        policy.refusal(text) if policy else None)
                    if foreign is not None:
                        exchange.detail = "redirect_to_internal_host"
                        exchange.outcome = "refused"
                        return framing, None, None
                    self._location = text
            elif lower == b"refresh":
                text = rewriter.rewrite_refresh(text)
                if policy is not None and policy.refresh_refusal(text) is not None:
                    exchange.detail, exchange.outcome = "refresh_to_internal_host", "refused"
                    return framing, None, None
            elif lower == b"link":
                text = rewriter.rewrite_link(text)
                if policy is not None and policy.link_refusal(text) is not None:
                    exchange.detail, exchange.outcome = "link_to_internal_host", "refused"
                    return framing, None, None
            elif lower == b"set-cookie":
                rewritten = self._cookie_space(exchange.session_id).namespaced(
                    text, exchange.url.split("?", 1)[0])
                if rewritten is None:
                    continue
                text = rewritten
            composed = text.encode("latin-1")
            if _FIELD_VALUE.fullmatch(composed) is None:
                raise h11.LocalProtocolError(f"rewritten {lower!r} is not a valid header value")
            out += (name, b": ", composed, b"\r\n")
        out.append(security_header_block(rewriter.session_host))
        return framing, b"".join(out), transform

    async def _stream_response_body(self, upstream: _Upstream, transform: _BodyTransform | None,
                                    exchange: _Exchange) -> None:
        while True:
            try:
                event = await self._upstream_event(upstream, self.config.body_timeout)
            except _BrowserGone:
                raise
            except (h11.RemoteProtocolError, ConnectionError, OSError, TimeoutError) as exc:
                # e.g. HTTP/1.0 + chunked without its last chunk, a reset tunnel stream, a
                # stalled device: pass on what the device sent, then abort the connection
                # without ending the message, so the browser sees it is incomplete
                exchange.outcome = "error"
                exchange.detail = outcomes.body_failure(exc)
                await self._drop_upstream()
                tail = transform.finish() if transform is not None else b""
                if tail:
                    exchange.bytes_out += len(tail)
                    await self._send(h11.Data(data=tail))
                await self._abort()
                raise _CloseConnection from exc
            if isinstance(event, h11.Data):
                data = transform.feed(event.data) if transform else bytes(event.data)
                if data:
                    exchange.bytes_out += len(data)
                    await self._send(h11.Data(data=data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if transform is not None:
                    tail = transform.finish()
                    if tail:
                        exchange.bytes_out += len(tail)
                        await self._send(h11.Data(data=tail))
                await self._send(h11.EndOfMessage())
                return

    async def _switch_protocols(self, upstream: _Upstream, headers: list[tuple[bytes, bytes]],
                                exchange: _Exchange) -> None:
        """Answer the browser's handshake (``headers``: the allow-listed 101) and relay frames
        until the WebSocket is over; its entry says messages and bytes each way and the close."""
        exchange.status = 101
        await self._send(h11.InformationalResponse(status_code=101, headers=headers))
        browser_tail, _ = self.conn.trailing_data
        device_tail, _ = upstream.conn.trailing_data
        stream = upstream.stream
        self.upstream = None  # the stream now belongs to the WebSocket
        websocket = WebSocketProxy(read_browser=self.reader.read, write_browser=self._write,
                                   device=stream, read_size=self.config.read_size,
                                   grace=self.config.websocket_close_grace)
        self.websocket = websocket
        try:
            await websocket.run(browser_tail, device_tail)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
            stats = websocket.stats
            exchange.bytes_in, exchange.bytes_out = stats.bytes_in, stats.bytes_out
            exchange.outcome, exchange.detail = outcomes.websocket_outcome(
                stats, ended=websocket.bridge.ended)
        raise _CloseConnection


class _BodyTransform:
    """Decode (if compressed) and rewrite one response body as it streams."""

    def __init__(self, rewriter: LanRewriter, coding: str,
                 refused: Callable[[str], str | None] | None = None,
                 inject: HtmlShimInjector | None = None) -> None:
        """``refused``: for HTML, the redirect policy its ``<meta>`` refreshes are held to;
        ``inject``: the device-cookie shim put at the start of navigated HTML."""
        self._decoder = BodyDecoder(coding) if coding != "identity" else None
        self._rewriter: StreamRewriter = rewriter.body_rewriter()
        self._guard = MetaRefreshGuard(refused) if refused is not None else None
        self._inject = inject

    def feed(self, data: bytes) -> bytes:
        if self._decoder is None:
            out = self._rewriter.feed(data)
        else:
            out = b"".join(self._rewriter.feed(piece) for piece in self._decoder.decode(data))
        if self._guard is not None:
            out = self._guard.feed(out)
        return self._inject.feed(out) if self._inject is not None and out else out

    def finish(self) -> bytes:
        tail = b""
        if self._decoder is not None:
            tail = self._rewriter.feed(self._decoder.flush())
        tail += self._rewriter.finish()
        if self._guard is not None:
            tail = self._guard.feed(tail) + self._guard.finish()
        if self._inject is not None:
            tail = (self._inject.feed(tail) if tail else b"") + self._inject.finish()
        return tail


#: ``Sec-Fetch-Dest`` values of a navigation: the documents that get the cookie shim
_DOCUMENT_DESTS = frozenset({b"document", b"iframe", b"frame", b"embed", b"object"})
#: events whose bytes _send may hold back (a tuple: ``isinstance`` with a ``|`` union builds
#: the union on every call)
_HELD_EVENTS = (h11.Response, h11.Data)
_MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/xml",
                           "application/xml", "image/svg+xml"})


def _markup(content_type: str) -> bool:
    """HTML, or XML that may carry XHTML elements (a ``<meta>`` refresh works there too)."""
    main = content_type.split(";", 1)[0].strip().lower()
    return main in _MARKUP_TYPES or main.endswith("+xml")


_REWRITTEN_RESPONSE_HEADERS = frozenset({
    b"location", b"content-location", b"refresh", b"link", b"set-cookie"})


def _unsent(sock: Any) -> int:
    """Bytes the kernel has not yet sent on ``sock`` (0 if unknown)."""
    if sock is None:
        return 0
    try:
        queued: int = struct.unpack(
            "i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        return queued
    except (OSError, ValueError):
        return 0


def _raw_items(headers: Any) -> list[tuple[bytes, bytes, bytes]]:
    """(name as sent, value, lower-case name) of a parsed h11 head."""
    return [(raw, value, raw.lower()) for raw, value in headers.raw_items()]


def _with_header_lines(head: bytes, lines: bytes) -> bytes:
    """``head`` (a serialised message head, ending in an empty line) with ``lines`` added."""
    if not lines:
        return head
    if not head.endswith(b"\r\n\r\n"):
        raise h11.LocalProtocolError("not a message head")
    return head[:-2] + lines + b"\r\n"


@dataclass(frozen=True, slots=True)
class _SessionStrings:
    """The per-session strings a request needs, built once per browser connection."""

    session_id: str
    device: Any
    origin: str
    origin_bytes: bytes
    device_origin: bytes
    device_host: bytes

    @classmethod
    def build(cls, config: ProxyConfig, info: SessionInfo) -> _SessionStrings:
        origin = config.session_origin(info.session_id)
        device_origin = info.device.origin.encode("ascii")
        if _FIELD_VALUE.fullmatch(device_origin) is None:
            raise h11.LocalProtocolError("the device's origin is not a valid header value")
        return cls(session_id=info.session_id, device=info.device, origin=origin,
                   origin_bytes=origin.encode("ascii"), device_origin=device_origin,
                   device_host=info.device.host_header.encode("ascii"))


def _has_body(fields: dict[bytes, bytes]) -> bool:
    """True unless the request's framing says it has no body (no TE, no or zero length)."""
    if b"transfer-encoding" in fields:
        return True
    length = fields.get(b"content-length")
    return length is not None and length.strip() != b"0"


def _first_values(headers: Any) -> dict[bytes, bytes]:
    """The first value of each header of a parsed h11 head, by lower-case name."""
    fields: dict[bytes, bytes] = {}
    for name, value in headers.raw_items():
        fields.setdefault(name.lower(), value)
    return fields


_REFUSED_RESPONSE_TEXT = {
    "": "It redirected the browser to an internal address outside this session.",
    "markup_in_unreadable_coding": "It sent a page in a compression the relay cannot read "
    "(only gzip and deflate were offered), so the relay could not check it.",
}
_DETAIL_TEXT = {
    "device_closed_without_response": "The device closed the connection without answering.",
}


def _outcome_for(kind: str) -> str:
    return {
        "session_ended": "ended",
        "session_not_found": "refused",
        "cross_site_refused": "refused",
        "not_signed_in": "refused",
        "auth_failed": "refused",
        "misdirected": "refused",
        "bad_request": "refused",
        "navigation_refused": "refused",
        "cross_site_navigation": "refused",
        "read_only_refused": "refused",
    }.get(kind, "error")
