"""What the browser-facing proxy needs from the rest of the relay: sessions and device streams.

The proxy is written against two small protocols so that it can be tested against real local
servers over real TCP and joined to the tunnel registry by a thin adapter:

- :class:`SessionDirectory` answers "which live session is ``s-<id>``?" with a
  :class:`SessionInfo` (expiry, the device's LAN view, who owns it) and opens a
  bidirectional byte stream to one of the device's endpoints (``port_index`` indexes
  ``SessionInfo.device.endpoints``).
- :class:`ByteStream` is that stream: ``read`` / ``write`` (with back-pressure) / ``write_eof``
  / ``aclose``. A tunnel stream and a TCP connection look the same to the proxy.

The stream always carries plain HTTP: for an ``https`` endpoint the agent terminates the
device's TLS (old protocol versions and self-signed certificates included), so the relay
speaks HTTP to it and the browser gets modern TLS from the relay.

:class:`StaticDirectory` maps sessions to fixed ``host:port`` TCP targets; the tests and the
benchmarks use it to reach local servers, and it is the model for the registry adapter
(:func:`session_from_claims` turns a tunnel ticket's claims into a :class:`SessionInfo`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ewsgate.relay.session_policy import SessionPolicy

__all__ = [
    "ByteStream",
    "DeviceStreamError",
    "DeviceView",
    "Endpoint",
    "SessionDirectory",
    "SessionInfo",
    "StaticDirectory",
    "StreamPair",
    "UpstreamUnavailable",
    "session_from_claims",
]


class UpstreamUnavailable(Exception):
    """No stream could be opened to the device (tunnel down, agent refused, device silent)."""

    code = "device_unreachable"


class DeviceStreamError(ConnectionResetError):
    """The stream to the device failed mid-exchange (tunnel stream reset, agent gone, device
    reset): a device-side failure, never the browser's. The message names the cause."""

    code = "device_reset"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One web endpoint of the device as the agent dials it: ``http`` or ``https`` and a port."""

    scheme: str
    port: int

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ValueError(f"endpoint scheme must be http or https, not {self.scheme!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"endpoint port {self.port} is not 1..65535")

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """How the device names itself on its LAN: what the rewriter maps to the session origin."""

    ip: str
    hostname: str | None = None
    endpoints: tuple[Endpoint, ...] = (Endpoint("http", 80),)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("a device needs at least one web endpoint")

    @property
    def primary_index(self) -> int:
        """The endpoint the browser's origin maps to: the first https one, else the first.

        HTTPS first because devices that enforce HTTPS redirect every HTTP request to it; the
        agent terminates the device's TLS, so the choice costs the browser nothing.
        """
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.scheme == "https":
                return index
        return 0

    @property
    def primary(self) -> Endpoint:
        return self.endpoints[self.primary_index]

    @property
    def host_header(self) -> str:
        """The ``Host`` the device expects: its IP (bracketed if IPv6), with a non-default port."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        endpoint = self.primary
        return host if endpoint.default_port else f"{host}:{endpoint.port}"

    @property
    def origin(self) -> str:
        return f"{self.primary.scheme}://{self.host_header}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session as the relay knows it from the agent's tunnel ticket."""

    session_id: str
    #: the session's end in epoch seconds (the ticket's ``exp``); the relay's clock decides
    expires_at: float
    device: DeviceView
    installation_id: str | None = None
    #: when the relay first learnt of the session (epoch seconds); caps the lifetime
    started_at: float | None = None
    #: the portal user id owning the session, when the ticket names it
    user_id: str | None = None
    #: the customer policy's mode and idle timeout (the ticket's ``pol``)
    policy: SessionPolicy = field(default_factory=SessionPolicy)


class ByteStream(Protocol):
    """A bidirectional byte stream to the device (a tunnel stream or a TCP connection).

    A failure of the stream itself is raised as :class:`DeviceStreamError` (or another
    ``ConnectionError``/``OSError`` of a TCP connection), never as a transport's own type.
    """

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` once the device has finished sending."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns when the stream can take more (back-pressure)."""
        ...

    async def write_eof(self) -> None:
        """Half-close: the device sees the end of our data."""
        ...

    async def aclose(self) -> None:
        """Close both directions; safe to call more than once."""
        ...


class SessionDirectory(Protocol):
    """Live sessions and streams to their devices (the tunnel registry, or a static map)."""

    def lookup(self, session_id: str) -> SessionInfo | None:
        """The live session with this id, or None."""
        ...

    async def open_stream(self, session_id: str, port_index: int) -> ByteStream:
        """A new stream to endpoint ``port_index`` of the session's device.

        Raises :class:`UpstreamUnavailable` when it cannot be opened.
        """
        ...


class StreamPair:
    """:class:`ByteStream` over an asyncio ``(StreamReader, StreamWriter)`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def read(self, max_bytes: int) -> bytes:
        return await self._reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def write_eof(self) -> None:
        if self._writer.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write_eof()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


@dataclass
class StaticDirectory:
    """Sessions mapped to fixed TCP targets: ``targets[session_id][port_index] = (host, port)``."""

    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    targets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def add(self, info: SessionInfo, targets: list[tuple[str, int]]) -> None:
        self.sessions[info.session_id] = info
        self.targets[info.session_id] = targets

    def remove(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.targets.pop(session_id, None)

    def lookup(self, session_id: str) -> SessionInfo | None:
        return self.sessions.get(session_id)

    async def open_stream(self, session_id: str, port_index: int) -> ByteStream:
        try:
            host, port = self.targets[session_id][port_index]
        except (KeyError, IndexError):
            raise UpstreamUnavailable(
                f"no endpoint {port_index} for session {session_id}") from None
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        return StreamPair(reader, writer)


def session_from_claims(claims: Mapping[str, Any], *,
                        started_at: float | None = None) -> SessionInfo:
    """Build a :class:`SessionInfo` from a verified tunnel ticket's claims.

    ``dev`` is ``{"ip", "hostname", "endpoints": [{"scheme", "port"}]}``; ``exp`` the expiry.
    """
    dev = claims.get("dev") or {}
    endpoints = tuple(
        Endpoint(str(item["scheme"]), int(item["port"])) for item in dev.get("endpoints") or []
    ) or (Endpoint("http", 80),)
    hostname = dev.get("hostname") or None
    return SessionInfo(
        session_id=str(claims["sid"]),
        expires_at=float(claims["exp"]),
        device=DeviceView(ip=str(dev["ip"]), hostname=str(hostname) if hostname else None,
                          endpoints=endpoints),
        installation_id=str(claims["sub"]) if claims.get("sub") is not None else None,
        started_at=started_at if started_at is not None else _float_or_none(claims.get("iat")),
        user_id=str(claims["uid"]) if claims.get("uid") is not None else None,
    )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
