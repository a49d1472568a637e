"""Relay nodes: registration (trusted: ``ewsgate admin create-relay``), lookup and the check
of a relay's credentials.

A relay authenticates to the portal with its id and a secret (256 random bits, shown once at
registration, stored as SHA-256). Relays hold no database credentials.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.credentials import hash_secret, new_secret
from ewsgate.portal.services.errors import AuthenticationFailed, Conflict, InvalidInput
from ewsgate.portal.services.validation import clean_hostname, clean_int, clean_text
from ewsgate.portal.store.models import Relay
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["RELAY_SECRET_PREFIX", "RegisteredRelay", "authenticate_relay", "list_relays",
           "register_relay"]

RELAY_SECRET_PREFIX = "ewsr_"


@dataclass(frozen=True, slots=True)
class RegisteredRelay:
    """A new relay row and its secret (plaintext, shown once)."""

    relay: Relay
    secret: str


async def register_relay(session: AsyncSession, *, name: str, public_domain: str,
                         public_port: int | None = None, tunnel_address: str | None = None,
                         clock: Clock = utc_now) -> RegisteredRelay:
    """Register a relay node; a taken name → :class:`Conflict` ``relay_exists``."""
    name = clean_text("name", name)
    domain = clean_hostname("public_domain", public_domain)
    if domain is None:
        raise InvalidInput("public_domain is required, e.g. rt.example.com",
                           field="public_domain")
    port = None if public_port is None else clean_int("public_port", public_port, low=1,
                                                      high=65535)
    if await session.scalar(select(Relay.id).where(Relay.name == name)) is not None:
        raise Conflict(f"a relay named {name!r} already exists", code="relay_exists",
                       field="name")
    secret = new_secret(RELAY_SECRET_PREFIX)
    relay = Relay(name=name, public_domain=domain, public_port=port,
                  tunnel_address=tunnel_address, secret_hash=hash_secret(secret),
                  created_at=clock())
    session.add(relay)
    await session.flush()
    await audit.record(session, "relay.create", actor=audit.SYSTEM, target_id=relay.id,
                       after=audit.snapshot(relay), clock=clock)
    return RegisteredRelay(relay, secret)


async def list_relays(session: AsyncSession) -> list[Relay]:
    """Every registered relay, by id."""
    return list((await session.scalars(select(Relay).order_by(Relay.id))).all())


async def authenticate_relay(session: AsyncSession, relay_id: int, secret: str, *,
                             clock: Clock = utc_now) -> Relay:
    """The relay whose id and secret match (records ``last_seen_at``), else
    :class:`AuthenticationFailed` ``invalid_relay_credentials``."""
    relay = await session.get(Relay, relay_id)
    expected = relay.secret_hash if relay is not None else hash_secret("")
    if relay is None or not hmac.compare_digest(expected, hash_secret(secret or "")):
        raise AuthenticationFailed("relay id or secret is wrong",
                                   code="invalid_relay_credentials")
    relay.last_seen_at = clock()
    return relay
