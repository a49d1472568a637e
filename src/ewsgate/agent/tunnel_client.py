"""The agent's tunnels: one outbound TLS connection per session, serving device streams.

For each ``OpenSession`` whose device identity check passed, the control handler calls
:meth:`TunnelClient.open_session`. A :class:`TunnelSession` then:

1. dials the relay (directly, or through the HTTP CONNECT proxy), TLS 1.3 with the
   installation's client certificate, and sends HELLO with the ticket and connection
   generation 1; ``open_session`` returns once the relay admitted it, or raises why not;
2. serves each stream the relay opens by dialing the verified device through
   :class:`~ewsgate.agent.dialer.DeviceDialer` -- the port index picks a configured endpoint;
   anything else is refused with ``DESTINATION_REFUSED``;
3. reconnects (backoff with jitter, next generation) if the connection drops while the session
   is valid; it stops for good on SESSION_EXPIRED, SESSION_CLOSED, TICKET_REFUSED or a changed
   device certificate;
4. enforces its own hard cap: the session ends at ``min(expires_at, started_at + 30 min +
   margin)`` by the agent's clock, whatever the relay does. The clock is injected;
5. never dials for a stream the relay already reset, and holds at most
   ``max_device_connections`` device connections at once (:mod:`.stream_guard`); refusals
   and the relay's protocol violations go to the portal as rate-limited tunnel reports, and a
   relay that keeps violating is cut: the session ends ``ENHANCE_YOUR_CALM``
   (:mod:`.tunnel_reports`).

State of a session::

    CONNECTING --admitted--> CONNECTED --drop--> RECONNECTING --admitted--> CONNECTED
         |                      |                     |
         +--refused--> FAILED   +--expiry/close--> ENDED <--expiry/close--+
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ewsgate.agent.device_gate import DeviceGate, IdentityLost
from ewsgate.agent.device_tls import DeviceCertChanged
from ewsgate.agent.dialer import DestinationRefused, DeviceDialer, DeviceTarget, DialPolicy
from ewsgate.agent.stream_guard import (
    DEFAULT_MAX_DEVICE_CONNECTIONS,
    DeviceSlots,
    dial_unless_reset,
)
from ewsgate.agent.tunnel_reports import ReportLedger, TunnelReport
from ewsgate.aio.connection import TunnelConnection
from ewsgate.aio.errors import TunnelError, map_exceptions
from ewsgate.aio.net import open_socket
from ewsgate.aio.streams import TunnelStream
from ewsgate.aio.tls import agent_tunnel_context
from ewsgate.tunnel import ErrorCode, ProtocolConfig, Role
from ewsgate.tunnel.credential import encode_credential

__all__ = ["SessionSpec", "SessionState", "TunnelClient", "TunnelClientConfig", "TunnelSession"]

log = logging.getLogger(__name__)

#: relay verdicts after which reconnecting is pointless
_FINAL = {ErrorCode.SESSION_EXPIRED, ErrorCode.SESSION_CLOSED, ErrorCode.TICKET_REFUSED,
          ErrorCode.DEVICE_CERT_CHANGED, ErrorCode.SUPERSEDED, ErrorCode.UNSUPPORTED_VERSION}


class SessionState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSpec:
    """What ``OpenSession`` tells the agent about one session."""

    session_id: str
    relay_host: str
    relay_port: int
    ticket: str
    device: DeviceTarget
    #: the session's end (epoch seconds)
    expires_at: float
    #: when the session started (epoch seconds); default: when open_session is called
    started_at: float | None = None
    #: name to verify in the relay's certificate when it differs from relay_host
    relay_server_name: str | None = None
    #: re-verifies the device on reconnect and before a device connection when stale
    gate: DeviceGate | None = None


@dataclass(frozen=True, kw_only=True)
class TunnelClientConfig:
    """The agent's tunnel settings, validated once."""

    cert_file: Path
    key_file: Path
    #: CA for the relay's certificate; None = the system's trust store
    relay_ca_file: Path | None = None
    #: http://[user:pass@]host:port of the site's CONNECT proxy
    proxy: str | None = None
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    dial_policy: DialPolicy = field(default_factory=DialPolicy)
    #: the longest a session may live, and the slack allowed for clock skew
    max_session: float = 30 * 60.0
    cap_margin: float = 60.0
    connect_within: float = 15.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 10.0
    #: how often the hard cap is checked against the clock
    watchdog_interval: float = 0.2
    #: device connections one session may hold at once; streams beyond are REFUSED_STREAM
    max_device_connections: int = DEFAULT_MAX_DEVICE_CONNECTIONS
    #: tunnel connections closed for the relay's violations before the session is cut
    max_violations: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.max_session <= 30 * 60.0 or not 0 <= self.cap_margin <= 300:
            raise ValueError("max_session must be in (0, 1800] s and cap_margin in [0, 300] s")


class TunnelSession:
    """The tunnel of one session; see the module docstring for its states."""

    def __init__(self, client: TunnelClient, spec: SessionSpec) -> None:
        self.client = client
        self.spec = spec
        self.state = SessionState.CONNECTING
        self.reason = ""
        self.generation = 0
        started = spec.started_at if spec.started_at is not None else client.clock()
        cfg = client.config
        #: the agent's own hard cap, in epoch seconds
        self.deadline = min(spec.expires_at, started + cfg.max_session + cfg.cap_margin)
        self.dialer = DeviceDialer(spec.device, cfg.dial_policy)
        self.slots = DeviceSlots(cfg.max_device_connections)
        self.ledger = ReportLedger(spec.session_id, max_violations=cfg.max_violations)
        if spec.gate is not None:  # the portal's certificate pin holds from the first stream
            self.dialer.pin.fingerprint = spec.gate.check.pins.ews_cert_sha256
        self.connection: TunnelConnection | None = None
        self.admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._watchdog())]

    @property
    def active(self) -> bool:
        return self.state not in (SessionState.ENDED, SessionState.FAILED)

    def end(self, state: SessionState, code: ErrorCode, reason: str) -> None:
        """Stop for good: close the tunnel (GOAWAY ``code``) and every device connection."""
        if not self.active:
            return
        self.state, self.reason = state, reason
        log.info("session %s %s: %s", self.spec.session_id, state.value, reason)
        if self.connection is not None and not self.connection.is_closed:
            self.connection.close(code, reason)
        if not self.admitted.done():
            self.admitted.set_exception(TunnelError(reason, code))
            self.admitted.exception()  # mark retrieved: open_session may already be gone
        if not self.ended.done():
            self.ended.set_result(None)
        for report in self.ledger.flush():
            self.client.report(report)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.client.forget(self)

    async def _watchdog(self) -> None:
        while self.active:
            if self.client.clock() >= self.deadline:
                self.end(SessionState.ENDED, ErrorCode.SESSION_EXPIRED,
                         "the session reached its end (agent hard cap)")
                return
            await asyncio.sleep(self.client.config.watchdog_interval)

    async def _run(self) -> None:
        delay = self.client.config.reconnect_initial
        while self.active:
            self.generation += 1
            try:
                if self.generation > 1 and self.spec.gate is not None:
                    await self.spec.gate.ensure(force=True, why="tunnel reconnect")
                conn = await self._connect()
            except IdentityLost as exc:
                self.end(SessionState.FAILED, ErrorCode.DEVICE_CERT_CHANGED, exc.message)
                return
            except TunnelError as exc:
                if exc.code in _FINAL or not self.admitted.done():
                    self.end(SessionState.FAILED, exc.code if isinstance(exc.code, ErrorCode)
                             else ErrorCode.CONNECT_FAILED, f"tunnel to the relay: {exc.message}")
                    return
                log.warning("session %s: reconnect failed: %s", self.spec.session_id, exc)
            else:
                delay = self.client.config.reconnect_initial
                self.state = SessionState.CONNECTED
                if not self.admitted.done():
                    self.admitted.set_result(None)
                why = await conn.wait_closed()
                if not self.active:
                    return
                if why.code in _FINAL:
                    self.end(SessionState.ENDED, ErrorCode(why.code), f"relay: {why.message}")
                    return
                log.warning("session %s: tunnel dropped (%s); reconnecting",
                            self.spec.session_id, why)
                self.state = SessionState.RECONNECTING
            if self.client.clock() >= self.deadline:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.client.config.reconnect_max)

    async def _connect(self) -> TunnelConnection:
        cfg, spec = self.client.config, self.spec
        loop = asyncio.get_running_loop()
        sock = await open_socket(spec.relay_host, spec.relay_port, cfg.proxy, cfg.connect_within)
        conn = TunnelConnection(Role.DIALER, config=cfg.protocol,
                                credential=encode_credential(spec.ticket, self.generation),
                                on_stream=self._serve_stream, clock=self.client.monotonic,
                                on_violation=self._on_violation)
        with map_exceptions(f"TLS to the relay {spec.relay_host}:{spec.relay_port}"):
            try:
                await loop.create_connection(
                    lambda: conn, sock=sock, ssl=self.client.ssl_context,
                    server_hostname=spec.relay_server_name or spec.relay_host,
                    ssl_handshake_timeout=cfg.connect_within)
            except BaseException:
                sock.close()
                raise
        self.connection = conn
        await conn.wait_hello(cfg.connect_within)
        return conn

    async def _serve_stream(self, stream: TunnelStream) -> None:
        if not self.slots.take():
            stream.reset(ErrorCode.REFUSED_STREAM, self.slots.refusal())
            self._report("stream_refused", "REFUSED_STREAM", self.slots.refusal())
            return
        try:
            await self._serve_device(stream)
        finally:
            self.slots.release()

    async def _serve_device(self, stream: TunnelStream) -> None:
        try:
            if self.spec.gate is not None:
                await self.spec.gate.ensure(force=False, why="new device connection")
            splice = await dial_unless_reset(stream, self.dialer.connect)
        except (DeviceCertChanged, IdentityLost) as exc:
            if self.spec.gate is not None and not isinstance(exc, IdentityLost):
                self.spec.gate.report("cert_pin_mismatch", exc.message)
            stream.reset(ErrorCode.DEVICE_CERT_CHANGED, exc.message)
            self.end(SessionState.FAILED, ErrorCode.DEVICE_CERT_CHANGED, exc.message)
            return
        except DestinationRefused as exc:
            stream.reset(ErrorCode.DESTINATION_REFUSED, exc.message)
            self._report("destination_refused", "DESTINATION_REFUSED", exc.message)
            return
        if splice is None:  # the relay reset the stream before or during the connect
            return
        stream.accept()
        splice.start()
        await splice.done

    def _on_violation(self, code: ErrorCode | int, reason: str, budget: str) -> None:
        """The relay broke the tunnel protocol (the core reset a stream or closed the
        connection): report it, and cut the relay if it keeps doing it."""
        name = code.name if isinstance(code, ErrorCode) else str(code)
        connection = self.connection
        fatal = connection is not None and connection.violation is not None
        self._report("protocol_violation", name, reason, fatal=fatal, budget=budget)

    def _report(self, kind: str, code: str, detail: str, *, fatal: bool = False,
                budget: str = "") -> None:
        reports, cut = self.ledger.record(kind, code, detail, self.client.monotonic(),
                                          fatal=fatal, budget=budget)
        for report in reports:
            self.client.report(report)
        if cut is not None:
            log.warning("session %s: %s", self.spec.session_id, cut)
            # not from inside the adapter's dispatch: end the session on the next loop turn
            asyncio.get_running_loop().call_soon(
                self.end, SessionState.FAILED, ErrorCode.ENHANCE_YOUR_CALM, cut)


class TunnelClient:
    """All tunnels of one agent. The control-channel handlers call this."""

    def __init__(self, config: TunnelClientConfig, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 reporter: Callable[[TunnelReport], None] | None = None) -> None:
        self.config = config
        #: where reports about a relay's misbehaviour go (the control stream)
        self.reporter = reporter
        #: wall clock (epoch seconds): session expiry and the hard cap
        self.clock = clock
        #: monotonic clock: keepalive
        self.monotonic = monotonic
        self._sessions: dict[str, TunnelSession] = {}
        self._ssl: ssl.SSLContext | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            c = self.config
            self._ssl = agent_tunnel_context(c.cert_file, c.key_file, c.relay_ca_file)
        return self._ssl

    async def open_session(self, spec: SessionSpec) -> TunnelSession:
        """Dial the relay for ``spec``; returns once admitted, raises :class:`TunnelError`."""
        if spec.session_id in self._sessions:
            raise TunnelError(f"session {spec.session_id} already has a tunnel",
                              ErrorCode.PROTOCOL_ERROR)
        if spec.expires_at <= self.clock():
            raise TunnelError(f"session {spec.session_id} has already expired",
                              ErrorCode.SESSION_EXPIRED)
        session = TunnelSession(self, spec)
        self._sessions[spec.session_id] = session
        session.start()
        await asyncio.shield(session.admitted)
        return session

    async def close_session(self, session_id: str,
                            reason: str = "the session was ended") -> bool:
        """End the session now: tunnel and device connections. False if it was not open."""
        session = self._sessions.get(session_id)
        if session is None:
            return False
        session.end(SessionState.ENDED, ErrorCode.SESSION_CLOSED, reason)
        return True

    def report(self, report: TunnelReport) -> None:
        """Hand a report to the control stream (logged as well; never raises)."""
        log.warning("session %s: %s %s x%d: %s", report.session_id, report.kind, report.code,
                    report.count, report.detail)
        if self.reporter is not None:
            try:
                self.reporter(report)
            except Exception:
                log.exception("tunnel report could not be queued")

    def session(self, session_id: str) -> TunnelSession | None:
        return self._sessions.get(session_id)

    def forget(self, session: TunnelSession) -> None:
        if self._sessions.get(session.spec.session_id) is session:
            del self._sessions[session.spec.session_id]

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            session.end(SessionState.ENDED, ErrorCode.NO_ERROR, "the agent is stopping")
