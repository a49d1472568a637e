"""Relay authentication: HTTP Basic with the relay id and secret (``client_secret_basic``).

A relay is an OAuth confidential client and an API caller of the portal; it holds what
``ewsgate admin create-relay`` printed — its numeric id and a 256-bit random secret — and the
portal stores only the secret's SHA-256 (:mod:`ewsgate.portal.services.relays` checks it;
a fast hash is right for a random secret). The same credentials authenticate the token
endpoint and the relay-facing API (``/api/v1/relay/...``).

RFC 6749 §2.3.1: the id and secret are form-urlencoded before being joined with ``:`` and
base64-encoded, so :func:`parse_basic_auth` URL-decodes both halves. The comparison is constant
time; an unknown relay id costs the same hash as a known one.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, unquote

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import relays
from ewsgate.portal.services.errors import AuthenticationFailed
from ewsgate.portal.store.models import Relay
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["authenticate_relay", "basic_auth_header", "parse_basic_auth"]

def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from an ``Authorization: Basic …`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return unquote(user), unquote(password)


def basic_auth_header(client_id: str, secret: str) -> str:
    """The ``Authorization`` header value a relay sends (for relays and tests)."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


async def authenticate_relay(session: AsyncSession, client_id: str, secret: str, *,
                             clock: Clock = utc_now) -> Relay | None:
    """The relay whose id and secret these are (its ``last_seen_at`` is recorded), or None."""
    relay_id = int(client_id) if client_id.isdigit() and len(client_id) < 10 else 0
    try:
        return await relays.authenticate_relay(session, relay_id, secret, clock=clock)
    except AuthenticationFailed:
        return None
