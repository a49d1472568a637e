"""The WebSocket opening handshake as the relay checks it, both sides (RFC 6455 §4). No I/O.

The relay is a WebSocket *endpoint* on each side, not a byte pipe: it answers the browser's
handshake itself and makes its own handshake with the device::

    browser ── GET + Upgrade, key K ──▶ relay ── GET + Upgrade, key K' (fresh) ──▶ device
    browser ◀── 101, accept(K) ──────── relay ◀── 101, accept(K') (checked) ────── device

- The browser's request (:func:`check_browser_request`) must be ``GET`` over HTTP/1.1 with no
  body, one ``Sec-WebSocket-Key`` that is the base64 of 16 bytes (else 400) and
  ``Sec-WebSocket-Version: 13`` (else 426 naming the version the relay speaks).
- The device gets a fresh key, ``Sec-WebSocket-Version: 13``, the browser's subprotocol offer
  and **no extensions** (:func:`device_handshake_lines`): the relay parses every frame, and a
  compressed one (``permessage-deflate``, RSV1) would have to be inflated and deflated again to
  be checked; offering nothing keeps frames plain on both legs.
- The device's ``101`` (:func:`check_device_switch`) must carry ``Upgrade: websocket``,
  ``Connection: upgrade`` and the ``Sec-WebSocket-Accept`` of the relay's key; a subprotocol it
  selects must be one the browser offered; any extension is refused (none was offered). Else
  the browser gets a 502 and nothing is spliced.
- The browser's ``101`` (:func:`browser_switch_headers`) is built from an allow-list:
  ``Upgrade``, ``Connection``, the accept value of the *browser's* key and the subprotocol
  the device chose. Nothing else of the device's ``101`` reaches the browser: no
  ``Set-Cookie``, no CSP of its own, no ``Sec-WebSocket-Extensions``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "WEBSOCKET_VERSION",
    "BrowserHandshake",
    "DeviceSwitch",
    "HandshakeRefused",
    "accept_value",
    "browser_switch_headers",
    "check_browser_request",
    "check_device_switch",
    "device_handshake_lines",
]

WEBSOCKET_VERSION = b"13"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_value(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID, usedforsecurity=False).digest())


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeRefused:
    """The browser's upgrade request is refused: the status, extra headers and why."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserHandshake:
    """A valid browser upgrade request: its key and the subprotocols it offered, in order."""

    key: bytes
    protocols: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSwitch:
    """A valid ``101`` from the device: the subprotocol it selected, if any."""

    protocol: bytes | None


def _tokens(values: Iterable[bytes]) -> list[bytes]:
    return [token.strip() for value in values for token in value.split(b",") if token.strip()]


def check_browser_request(method: bytes, http_version: bytes,
                          headers: Iterable[tuple[bytes, bytes]]
                          ) -> BrowserHandshake | HandshakeRefused:
    """Check a browser's upgrade request (it asked for ``Upgrade: websocket``)."""
    items = [(bytes(name).lower(), bytes(value)) for name, value in headers]
    if method != b"GET":
        return HandshakeRefused(status=400, reason=(
            f"a WebSocket opening handshake must be a GET, not {method.decode('latin-1')}"))
    if http_version != b"1.1":
        return HandshakeRefused(status=400, reason=(
            "a WebSocket opening handshake must be HTTP/1.1, not HTTP/"
            f"{http_version.decode('latin-1')}"))
    if any(name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
           for name, value in items):
        return HandshakeRefused(status=400, reason="a WebSocket opening handshake has no body")
    versions = [value.strip() for name, value in items if name == b"sec-websocket-version"]
    if versions != [WEBSOCKET_VERSION]:
        return HandshakeRefused(
            status=426, headers=((b"Sec-WebSocket-Version", WEBSOCKET_VERSION),),
            reason=(f"WebSocket version {b', '.join(versions).decode('latin-1') or 'missing'}"
                    " is not supported; this relay speaks version 13"))
    keys = [value.strip() for name, value in items if name == b"sec-websocket-key"]
    if len(keys) != 1:
        return HandshakeRefused(status=400, reason=(
            "a WebSocket opening handshake needs exactly one Sec-WebSocket-Key"))
    try:
        raw = base64.b64decode(keys[0], validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        return HandshakeRefused(status=400, reason=(
            "Sec-WebSocket-Key must be the base64 encoding of 16 random bytes"))
    protocols = tuple(_tokens(value for name, value in items
                              if name == b"sec-websocket-protocol"))
    return BrowserHandshake(key=keys[0], protocols=protocols)


def device_handshake_lines(handshake: BrowserHandshake) -> tuple[bytes, bytes]:
    """The key sent to the device (fresh, the relay's) and the handshake header lines to add.

    Every ``Sec-WebSocket-*`` header of the browser is replaced by these: no extensions are
    offered (see the module docstring).
    """
    key = base64.b64encode(secrets.token_bytes(16))
    lines = b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
    if handshake.protocols:
        lines += b"Sec-WebSocket-Protocol: " + b", ".join(handshake.protocols) + b"\r\n"
    return key, lines


def check_device_switch(headers: Iterable[tuple[bytes, bytes]], device_key: bytes,
                        offered: tuple[bytes, ...]) -> DeviceSwitch | str:
    """Check the device's ``101`` to the relay's handshake; a string says what is wrong."""
    items = [(bytes(name).lower(), bytes(value)) for name, value in headers]
    upgrade = [token.lower() for token in _tokens(v for n, v in items if n == b"upgrade")]
    if upgrade != [b"websocket"]:
        return "its 101 did not say Upgrade: websocket"
    if b"upgrade" not in [t.lower() for t in _tokens(v for n, v in items if n == b"connection")]:
        return "its 101 did not say Connection: upgrade"
    accepts = [value.strip() for name, value in items if name == b"sec-websocket-accept"]
    if not accepts:
        return "its 101 had no Sec-WebSocket-Accept"
    if accepts != [accept_value(device_key)]:
        return "its 101 had a wrong Sec-WebSocket-Accept (not an answer to the relay's key)"
    if any(name == b"sec-websocket-extensions" for name, _ in items):
        return "its 101 selected an extension, and none was offered"
    protocols = _tokens(value for name, value in items if name == b"sec-websocket-protocol")
    if len(protocols) > 1:
        return "its 101 selected more than one subprotocol"
    if protocols and protocols[0] not in offered:
        return "its 101 selected a subprotocol the browser did not offer"
    return DeviceSwitch(protocol=protocols[0] if protocols else None)


def browser_switch_headers(handshake: BrowserHandshake,
                           switch: DeviceSwitch) -> list[tuple[bytes, bytes]]:
    """The browser's ``101`` headers: the allow-list, nothing copied from the device."""
    headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
               (b"Sec-WebSocket-Accept", accept_value(handshake.key))]
    if switch.protocol is not None:
        headers.append((b"Sec-WebSocket-Protocol", switch.protocol))
    return headers
