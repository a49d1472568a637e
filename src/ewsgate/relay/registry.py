"""The relay's live tunnels: session id -> the agent's tunnel, until the session's expiry.

The tunnel server registers each admitted tunnel here; the browser-facing proxy finds the
session (:meth:`TunnelRegistry.lookup`) and opens streams to the device
(:meth:`TunnelRegistry.open_stream`). The registry implements the proxy's
:class:`~ewsgate.relay.upstream.SessionDirectory` protocol, so the proxy needs nothing else.

Lifetime. Every entry carries the ticket's ``exp``; a watchdog drops the tunnel at that moment
(GOAWAY ``SESSION_EXPIRED``), whatever the agent does, measured by the relay's own clock.
:meth:`TunnelRegistry.close_session` ends a session early (the portal's CloseSession, a user,
an administrator): the tunnel gets GOAWAY ``SESSION_CLOSED`` at once, and the session id is
remembered until its expiry so the agent cannot reconnect into it.

A newer connection for the same session (a reconnect, higher generation) replaces the older
one, which is closed with ``SUPERSEDED``.

Session-end listeners (:meth:`TunnelRegistry.add_session_end_listener`; the browser proxy is
one) are awaited, for at most ``end_grace`` seconds, *before* the tunnel is dropped, whether the
session expired or someone called :meth:`TunnelRegistry.close_session`: an open WebSocket's
close 1008 still reaches the device through the tunnel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ewsgate.aio.connection import TunnelConnection
from ewsgate.aio.errors import StreamRefusedError, TunnelError
from ewsgate.aio.streams import TunnelStream
from ewsgate.relay.clock import Clock, SystemClock
from ewsgate.relay.session_policy import SessionPolicy
from ewsgate.relay.tickets import TunnelTicket
from ewsgate.relay.upstream import (
    ByteStream,
    DeviceStreamError,
    SessionInfo,
    UpstreamUnavailable,
)
from ewsgate.tunnel import ErrorCode

__all__ = ["LiveTunnel", "SessionEndListener", "TunnelByteStream", "TunnelRegistry"]

#: called with (session id, reason) when a session ends here, before its tunnel is dropped
SessionEndListener = Callable[[str, str], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LiveTunnel:
    """One admitted tunnel and the ticket that admitted it."""

    ticket: TunnelTicket
    connection: TunnelConnection
    info: SessionInfo
    watchdog: asyncio.Task[None] | None = field(default=None, repr=False)
    #: when this connection was admitted (relay clock)
    registered_at: float = 0.0


class TunnelByteStream:
    """:class:`~ewsgate.relay.upstream.ByteStream` over a :class:`TunnelStream`."""

    def __init__(self, stream: TunnelStream) -> None:
        self.stream = stream

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self.stream.read(max_bytes)
        except TunnelError as exc:
            raise DeviceStreamError(f"the tunnel stream to the device failed: {exc}") from exc

    async def write(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except TunnelError as exc:
            raise DeviceStreamError(f"the tunnel stream to the device failed: {exc}") from exc

    async def write_eof(self) -> None:
        self.stream.write_eof()

    async def aclose(self) -> None:
        self.stream.close()


class TunnelRegistry:
    """Live tunnels by session id. One registry per relay process."""

    def __init__(self, clock: Clock | None = None, open_within: float = 15.0,
                 end_grace: float = 3.0) -> None:
        self.clock: Clock = clock or SystemClock()
        self._open_within = open_within
        self._end_grace = end_grace
        self._end_listeners: list[SessionEndListener] = []
        self._live: dict[str, LiveTunnel] = {}
        #: session ids closed early -> their expiry (refuse reconnects until then)
        self._closed: dict[str, float] = {}
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ the proxy's side

    def lookup(self, session_id: str) -> SessionInfo | None:
        """The live session ``session_id`` (its device view and expiry), or None."""
        live = self._live.get(session_id)
        if live is None or live.connection.is_closed or self.clock.now() >= live.info.expires_at:
            return None
        return live.info

    async def open_stream(self, session_id: str, port_index: int,
                          metadata: bytes = b"") -> ByteStream:
        """A new stream to endpoint ``port_index`` of the session's device.

        Raises :class:`~ewsgate.relay.upstream.UpstreamUnavailable` (with the reason) when the
        tunnel is not up, the agent refuses the destination, or the device cannot be reached.
        """
        return TunnelByteStream(await self.open_tunnel_stream(session_id, port_index, metadata))

    async def open_tunnel_stream(self, session_id: str, port_index: int,
                                 metadata: bytes = b"") -> TunnelStream:
        """Like :meth:`open_stream`, returning the :class:`TunnelStream` itself."""
        live = self._live.get(session_id)
        if live is None or self.lookup(session_id) is None:
            raise UpstreamUnavailable(f"session {session_id} has no live tunnel: the agent is "
                                      "not connected (yet), or the session ended")
        if not 0 <= port_index < len(live.info.device.endpoints):
            raise UpstreamUnavailable(f"session {session_id}'s device has no endpoint "
                                      f"{port_index}")
        try:
            return await live.connection.open_stream(port_index, metadata,
                                                     within=self._open_within)
        except StreamRefusedError as exc:
            raise UpstreamUnavailable(f"the agent could not open the device connection: "
                                      f"{exc.message}") from exc
        except (TunnelError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"the tunnel failed while opening a stream: {exc}") from exc

    async def wait_for(self, session_id: str, within: float) -> SessionInfo:
        """Wait until the session's tunnel is up (the proxy's first request may race the agent)."""
        async with asyncio.timeout(within):
            while (info := self.lookup(session_id)) is None:
                changed = self._changed
                await changed.wait()
        return info

    async def wait_change(self) -> None:
        """Return at the next change of the live tunnels (one registered, dropped or ended)."""
        changed = self._changed
        await changed.wait()

    # ------------------------------------------------------------------ the tunnel server's side

    def is_closed(self, session_id: str) -> bool:
        """True if the session was ended early (a reconnect into it must be refused)."""
        self._prune()
        return session_id in self._closed

    def register(self, ticket: TunnelTicket, connection: TunnelConnection) -> LiveTunnel:
        """Make ``connection`` the session's tunnel, replacing (and closing) an older one."""
        now = self.clock.now()
        info = SessionInfo(session_id=ticket.session_id, expires_at=ticket.expires_at,
                           device=ticket.device, installation_id=ticket.installation_id,
                           started_at=now, policy=SessionPolicy.from_claims(ticket.claims))
        old = self._live.get(ticket.session_id)
        if old is not None:
            info = SessionInfo(session_id=info.session_id, expires_at=info.expires_at,
                               device=info.device, installation_id=info.installation_id,
                               started_at=old.info.started_at, policy=info.policy)
            self._drop(old, ErrorCode.SUPERSEDED, "replaced by a newer tunnel for the session")
        live = LiveTunnel(ticket=ticket, connection=connection, info=info, registered_at=now)
        live.watchdog = asyncio.get_running_loop().create_task(self._watch(live))
        self._live[ticket.session_id] = live
        self._notify()
        return live

    async def _watch(self, live: LiveTunnel) -> None:
        expiry = asyncio.ensure_future(self.clock.sleep_until(live.info.expires_at))
        try:
            both: list[asyncio.Future[Any]] = [expiry, live.connection.closed]
            done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expiry.cancel()
        if expiry in done and not live.connection.is_closed:
            await self._announce_end(live.info.session_id, "the session expired")
            log.info("session %s expired: dropping its tunnel", live.info.session_id)
            live.connection.close(ErrorCode.SESSION_EXPIRED,
                                  "the session expired; start a new one from the portal")
        if self._live.get(live.info.session_id) is live:
            del self._live[live.info.session_id]
            self._notify()

    async def close_session(self, session_id: str,
                            reason: str = "the session was ended") -> bool:
        """End a session now; returns False if it had no live tunnel. Waits at most 2 s."""
        self._closed[session_id] = max(self.clock.now() + 3600.0,
                                       self._closed.get(session_id, 0.0))
        await self._announce_end(session_id, reason)
        live = self._live.get(session_id)
        if live is None:
            return False
        if live.ticket.expires_at:
            self._closed[session_id] = live.ticket.expires_at
        self._drop(live, ErrorCode.SESSION_CLOSED, reason)
        try:
            async with asyncio.timeout(2.0):
                await live.connection.wait_closed()
        except TimeoutError:
            log.warning("tunnel of session %s did not close within 2 s", session_id)
        return True

    def add_session_end_listener(self, listener: SessionEndListener) -> None:
        """Call ``listener(session_id, reason)`` whenever a session ends on this relay."""
        self._end_listeners.append(listener)

    async def _announce_end(self, session_id: str, reason: str) -> None:
        if not self._end_listeners:
            return
        calls = [asyncio.ensure_future(listener(session_id, reason))
                 for listener in self._end_listeners]
        done, pending = await asyncio.wait(calls, timeout=self._end_grace)
        for call in pending:
            call.cancel()
        for call in done:
            if not call.cancelled() and call.exception() is not None:
                log.warning("a session-end listener failed for %s: %s", session_id,
                            call.exception())

    async def close_all(self, reason: str = "the relay is shutting down") -> None:
        for live in list(self._live.values()):
            self._drop(live, ErrorCode.NO_ERROR, reason)
        for live in list(self._live.values()):
            if live.watchdog is not None:
                live.watchdog.cancel()
        self._live.clear()

    @property
    def sessions(self) -> list[str]:
        return [sid for sid in self._live if self.lookup(sid) is not None]

    def tunnel(self, session_id: str) -> LiveTunnel | None:
        return self._live.get(session_id)

    @property
    def live_tunnels(self) -> list[LiveTunnel]:
        """Every admitted tunnel not yet dropped."""
        return list(self._live.values())

    def _drop(self, live: LiveTunnel, code: ErrorCode, reason: str) -> None:
        if self._live.get(live.info.session_id) is live:
            del self._live[live.info.session_id]
        if not live.connection.is_closed:
            # NO_ERROR is a graceful GOAWAY; anything else ends the streams at once
            live.connection.close(code, reason)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _prune(self) -> None:
        now = self.clock.now()
        for sid in [s for s, until in self._closed.items() if until <= now]:
            del self._closed[sid]
