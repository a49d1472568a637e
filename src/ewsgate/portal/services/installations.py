"""Installations (on-site agents) and their one-time enrolment tokens.

Access follows the installation's customer (see :mod:`.access`). Enrolment tokens are random
(256 bits), shown once, stored as SHA-256, valid for a limited time and usable once:
:func:`create_enrolment_token` issues one for an Administrator; :func:`redeem_enrolment_token`
is what the control server calls when an agent enrols (no actor: the token is the credential).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services.access import Action, Actor, load_tree, require, scope_for
from ewsgate.portal.services.errors import AuthenticationFailed, NotFound
from ewsgate.portal.services.validation import check_known, clean_bool, clean_int, clean_text
from ewsgate.portal.sessions.revocation import revoke_installation
from ewsgate.portal.store.models import Customer, EnrolmentToken, Installation
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "ENROLMENT_TOKEN_PREFIX",
    "IssuedEnrolmentToken",
    "create_enrolment_token",
    "create_installation",
    "delete_installation",
    "get_installation",
    "list_installations",
    "redeem_enrolment_token",
    "update_installation",
]

ENROLMENT_TOKEN_PREFIX = "ewse_"
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)
_CREATE_FIELDS = frozenset({"customer_id", "name", "enabled"})
_UPDATE_FIELDS = frozenset({"customer_id", "name", "enabled"})


@dataclass(frozen=True, slots=True)
class IssuedEnrolmentToken:
    """A freshly issued token: ``token`` is the plaintext, shown once and never stored."""

    token: str
    record: EnrolmentToken


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def list_installations(session: AsyncSession, actor: Actor, *,
                             customer_id: int | None = None, online: bool | None = None,
                             search: str | None = None) -> list[Installation]:
    """Installations the actor can see, by name; optional filters by customer (that customer
    only, not its subtree), online state and a name substring."""
    tree = await load_tree(session, actor.dealer_id)
    visible = scope_for(actor, Action.VIEW, tree)
    if visible.empty:
        return []
    query = select(Installation).where(Installation.customer_id.in_(visible.customer_ids))
    if customer_id is not None:
        query = query.where(Installation.customer_id == customer_id)
    if online is not None:
        query = query.where(Installation.online.is_(online))
    if search:
        query = query.where(func.lower(Installation.name).contains(search.strip().lower()))
    return list((await session.scalars(query.order_by(Installation.name, Installation.id))).all())


async def get_installation(session: AsyncSession, actor: Actor, installation_id: int,
                           action: Action = Action.VIEW) -> Installation:
    """The installation if the actor may do ``action`` on it (NotFound / PermissionDenied)."""
    installation = await session.get(Installation, installation_id)
    tree = await load_tree(session, actor.dealer_id)
    customer_id = installation.customer_id if installation is not None else None
    if installation is None or customer_id not in tree.parents:
        raise NotFound.of("installation", installation_id)
    require(actor, action, tree, customer_id, kind="installation", ident=installation_id)
    return installation


async def create_installation(session: AsyncSession, actor: Actor, values: Mapping[str, Any], *,
                              clock: Clock = utc_now) -> Installation:
    """Create an installation: ``customer_id`` and ``name`` required, ``enabled`` (default
    true). Administrator of the customer."""
    check_known(values, _CREATE_FIELDS)
    name = clean_text("name", values.get("name"))
    customer_id = clean_int("customer_id", values.get("customer_id"), low=1, high=2**31 - 1)
    enabled = clean_bool("enabled", values.get("enabled", True))
    await _require_customer(session, actor, customer_id)
    installation = Installation(customer_id=customer_id, name=name, enabled=enabled,
                                online=False, created_at=clock())
    session.add(installation)
    await session.flush()
    return installation


async def update_installation(session: AsyncSession, actor: Actor, installation_id: int,
                              changes: Mapping[str, Any], *,
                              clock: Clock = utc_now) -> Installation:
    """Rename, enable/disable or move an installation (Administrator of it and of the target
    customer). A disabled installation opens no sessions."""
    check_known(changes, _UPDATE_FIELDS)
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    if "name" in changes:
        installation.name = clean_text("name", changes["name"])
    if "enabled" in changes:
        enabled = clean_bool("enabled", changes["enabled"])
        if installation.enabled and not enabled:
            await revoke_installation(session, installation.id,
                                      f"installation {installation.id} was disabled", clock())
        installation.enabled = enabled
    if "customer_id" in changes:
        customer_id = clean_int("customer_id", changes["customer_id"], low=1, high=2**31 - 1)
        await _require_customer(session, actor, customer_id)
        installation.customer_id = customer_id
    await session.flush()
    return installation


async def delete_installation(session: AsyncSession, actor: Actor, installation_id: int, *,
                              clock: Clock = utc_now) -> None:
    """Delete an installation with its devices and tokens (Administrator). Its certificate is
    refused from then on, because the control server looks the installation up per call."""
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    await revoke_installation(session, installation.id,
                              f"installation {installation.id} was deleted", clock())
    await session.delete(installation)
    await session.flush()


async def create_enrolment_token(session: AsyncSession, actor: Actor, installation_id: int, *,
                                 lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
                                 clock: Clock = utc_now) -> IssuedEnrolmentToken:
    """Issue a one-time enrolment token for the installation (Administrator of it).

    Earlier unused tokens of the installation stay valid until they expire or are used.
    """
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    token = ENROLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock()
    record = EnrolmentToken(installation_id=installation.id, token_hash=hash_token(token),
                            created_at=now, expires_at=now + lifetime)
    session.add(record)
    await session.flush()
    return IssuedEnrolmentToken(token, record)


async def redeem_enrolment_token(session: AsyncSession, token: str, *,
                                 clock: Clock = utc_now) -> Installation:
    """Consume ``token`` and return its installation; the control server calls this on enrol.

    Unknown, used or expired tokens, or a disabled installation → :class:`AuthenticationFailed`
    with code ``enrolment_token_invalid`` / ``enrolment_token_used`` /
    ``enrolment_token_expired`` / ``installation_disabled``. The token is marked used with a
    conditional UPDATE, so two concurrent enrolments cannot both succeed.
    """
    record = await session.scalar(
        select(EnrolmentToken).where(EnrolmentToken.token_hash == hash_token(token)))
    if record is None:
        raise AuthenticationFailed("enrolment token is not valid; create a new one in the portal",
                                   code="enrolment_token_invalid")
    now = clock()
    if record.used_at is not None:
        raise AuthenticationFailed("enrolment token was already used; create a new one",
                                   code="enrolment_token_used")
    if record.expires_at <= now:
        raise AuthenticationFailed(f"enrolment token expired at {_iso(record.expires_at)}; "
                                   "create a new one", code="enrolment_token_expired")
    installation = await session.get(Installation, record.installation_id)
    if installation is None or not installation.enabled:
        raise AuthenticationFailed("the installation is disabled; enable it in the portal",
                                   code="installation_disabled")
    result = await session.execute(
        update(EnrolmentToken).where(EnrolmentToken.id == record.id,
                                     EnrolmentToken.used_at.is_(None)).values(used_at=now))
    if getattr(result, "rowcount", 1) != 1:
        raise AuthenticationFailed("enrolment token was already used; create a new one",
                                   code="enrolment_token_used")
    return installation


async def _require_customer(session: AsyncSession, actor: Actor, customer_id: int) -> None:
    customer = await session.get(Customer, customer_id)
    tree = await load_tree(session, actor.dealer_id)
    if customer is None or customer.dealer_id != actor.dealer_id:
        raise NotFound(f"customer {customer_id} does not exist or is not visible to you",
                       field="customer_id")
    if not scope_for(actor, Action.VIEW, tree).covers(customer_id):
        raise NotFound(f"customer {customer_id} does not exist or is not visible to you",
                       field="customer_id")
    require(actor, Action.MANAGE_INVENTORY, tree, customer_id, kind="customer",
            ident=customer_id)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
