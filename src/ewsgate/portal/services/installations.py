"""Installations (on-site agents) and their one-time enrolment tokens.

Access follows the installation's customer (see :mod:`.access`). Enrolment tokens are random
(256 bits), shown once, stored as SHA-256, valid for a limited time and usable once:
:func:`create_enrolment_token` issues one for an Administrator; :func:`redeem_enrolment_token`
is what the control server calls when an agent enrols (no actor: the token is the credential).

Re-enrolment is explicit. An installation that has a certificate gets a token only when the
Administrator asks for a *replacement* (``purpose="replace"``); redeeming it replaces the
certificate (the old one is refused from then on) and the token's row records who asked, when,
and which certificate was replaced (:func:`enrolment_history`). Only the newest token of an
installation is valid: issuing one revokes every earlier unused one, so a stray older token
(in a mail, a ticket, a shell history) enrols nothing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, require, scope_for
from ewsgate.portal.services.errors import AuthenticationFailed, Conflict, NotFound
from ewsgate.portal.services.site_subnets import clean_site_subnets
from ewsgate.portal.services.validation import (
    check_known,
    clean_bool,
    clean_choice,
    clean_int,
    clean_text,
)
from ewsgate.portal.sessions.revocation import revoke_installation
from ewsgate.portal.store.models import (
    ENROLMENT_PURPOSES,
    Customer,
    EnrolmentToken,
    Installation,
)
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "ENROLMENT_TOKEN_PREFIX",
    "IssuedEnrolmentToken",
    "Redemption",
    "create_enrolment_token",
    "create_installation",
    "delete_installation",
    "enrolment_history",
    "get_installation",
    "list_installations",
    "on_certificate_replaced",
    "record_enrolment",
    "redeem_enrolment_token",
    "update_installation",
]

log = logging.getLogger(__name__)

ENROLMENT_TOKEN_PREFIX = "ewse_"
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)
_CREATE_FIELDS = frozenset({"customer_id", "name", "enabled", "site_subnets"})
_UPDATE_FIELDS = frozenset({"customer_id", "name", "enabled", "site_subnets"})


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
    true), ``site_subnets`` (default none; see :func:`clean_site_subnets`). Administrator of
    the customer."""
    check_known(values, _CREATE_FIELDS)
    name = clean_text("name", values.get("name"))
    customer_id = clean_int("customer_id", values.get("customer_id"), low=1, high=2**31 - 1)
    enabled = clean_bool("enabled", values.get("enabled", True))
    subnets = clean_site_subnets("site_subnets", values.get("site_subnets"))
    await _require_customer(session, actor, customer_id)
    installation = Installation(customer_id=customer_id, name=name, enabled=enabled,
                                online=False, created_at=clock(), site_subnets=subnets)
    session.add(installation)
    await session.flush()
    await audit.record(session, "installation.create", actor=actor, target_id=installation.id,
                       customer_id=customer_id, after=audit.snapshot(installation), clock=clock)
    return installation


async def update_installation(session: AsyncSession, actor: Actor, installation_id: int,
                              changes: Mapping[str, Any], *,
                              clock: Clock = utc_now) -> Installation:
    """Rename, enable/disable, move an installation or set its site subnets (Administrator of
    it and of the target customer). A disabled installation opens no sessions; new site
    subnets apply from the next identity check and session."""
    check_known(changes, _UPDATE_FIELDS)
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    before = audit.snapshot(installation)
    if "name" in changes:
        installation.name = clean_text("name", changes["name"])
    if "site_subnets" in changes:
        installation.site_subnets = clean_site_subnets("site_subnets", changes["site_subnets"])
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
    await audit.record(session, "installation.update", actor=actor, target_id=installation.id,
                       customer_id=installation.customer_id, before=before,
                       after=audit.snapshot(installation), clock=clock)
    return installation


async def delete_installation(session: AsyncSession, actor: Actor, installation_id: int, *,
                              clock: Clock = utc_now) -> None:
    """Delete an installation with its devices and tokens (Administrator). Its certificate is
    refused from then on, because the control server looks the installation up per call."""
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    await audit.record(session, "installation.delete", actor=actor, target_id=installation.id,
                       customer_id=installation.customer_id,
                       before=audit.snapshot(installation), clock=clock)
    await revoke_installation(session, installation.id,
                              f"installation {installation.id} was deleted", clock())
    await session.delete(installation)
    await session.flush()


async def create_enrolment_token(session: AsyncSession, actor: Actor, installation_id: int, *,
                                 purpose: str | None = None,
                                 lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
                                 clock: Clock = utc_now) -> IssuedEnrolmentToken:
    """Issue a one-time enrolment token for the installation (Administrator of it).

    ``purpose`` is ``enrol`` for an installation that has no certificate yet and must be
    ``replace`` for one that has (a replacement is something the Administrator asks for, never
    a side effect); ``None`` means ``enrol``. Every earlier unused token of the installation is
    revoked: only the newest one enrols.
    """
    installation = await get_installation(session, actor, installation_id,
                                          Action.MANAGE_INVENTORY)
    wanted = clean_choice("purpose", purpose or "enrol", ENROLMENT_PURPOSES)
    enrolled = installation.cert_serial is not None
    if enrolled and wanted != "replace":
        raise Conflict(f"installation {installation.id} is already enrolled; a new token would "
                       "replace its certificate, so ask for a replacement (purpose \"replace\")",
                       code="installation_enrolled", field="purpose")
    if not enrolled and wanted == "replace":
        raise Conflict(f"installation {installation.id} has no certificate to replace; ask for "
                       "an enrolment token (purpose \"enrol\")",
                       code="installation_not_enrolled", field="purpose")
    now = clock()
    await session.execute(
        update(EnrolmentToken).where(EnrolmentToken.installation_id == installation.id,
                                     EnrolmentToken.used_at.is_(None),
                                     EnrolmentToken.revoked_at.is_(None)).values(revoked_at=now))
    token = ENROLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = EnrolmentToken(installation_id=installation.id, token_hash=hash_token(token),
                            created_at=now, expires_at=now + lifetime, purpose=wanted,
                            created_by_user_id=actor.user_id, created_by_email=actor.email)
    session.add(record)
    await session.flush()
    await audit.record(session, "enrolment_token.create", actor=actor, target_id=record.id,
                       customer_id=installation.customer_id, after=audit.snapshot(record),
                       detail=f"{wanted} for installation {installation.id}", clock=clock)
    return IssuedEnrolmentToken(token, record)


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redeemed token: the installation it enrols and the token's record."""

    installation: Installation
    record: EnrolmentToken


async def redeem_enrolment_token(session: AsyncSession, token: str, *,
                                 clock: Clock = utc_now) -> Redemption:
    """Consume ``token`` and return its installation; the control server calls this on enrol.

    Unknown, used, superseded or expired tokens, or a disabled installation →
    :class:`AuthenticationFailed` with code ``enrolment_token_invalid`` /
    ``enrolment_token_used`` / ``enrolment_token_superseded`` / ``enrolment_token_expired`` /
    ``installation_disabled``; an ``enrol`` token for an installation that has a certificate
    meanwhile → ``enrolment_token_stale``. The token is marked used with a conditional UPDATE,
    so two concurrent enrolments cannot both succeed. The messages say what to do without
    naming anything of the installation (the caller holds only a token).
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
    if record.revoked_at is not None:
        raise AuthenticationFailed("enrolment token was superseded by a newer token for the "
                                   "same installation; use the newest token, or ask an "
                                   "administrator for a new one",
                                   code="enrolment_token_superseded")
    if record.expires_at <= now:
        raise AuthenticationFailed(f"enrolment token expired at {_iso(record.expires_at)}; "
                                   "create a new one", code="enrolment_token_expired")
    installation = await session.get(Installation, record.installation_id)
    if installation is None or not installation.enabled:
        raise AuthenticationFailed("the installation is disabled; enable it in the portal",
                                   code="installation_disabled")
    if record.purpose != "replace" and installation.cert_serial is not None:
        raise AuthenticationFailed("the installation is already enrolled; replacing its "
                                   "certificate needs a replacement token from an "
                                   "administrator", code="enrolment_token_stale")
    result = await session.execute(
        update(EnrolmentToken).where(EnrolmentToken.id == record.id,
                                     EnrolmentToken.used_at.is_(None),
                                     EnrolmentToken.revoked_at.is_(None)).values(used_at=now))
    if getattr(result, "rowcount", 1) != 1:
        raise AuthenticationFailed("enrolment token was already used; create a new one",
                                   code="enrolment_token_used")
    return Redemption(installation, record)


async def record_enrolment(session: AsyncSession, redemption: Redemption, *, cert_serial: str,
                           cert_not_after: datetime, clock: Clock = utc_now) -> None:
    """Make the newly signed certificate the installation's current one and write the history.

    For a replacement, the certificate it replaced is kept on the token's row and
    :func:`on_certificate_replaced` is called.
    """
    installation, record = redemption.installation, redemption.record
    previous = installation.cert_serial
    installation.cert_serial = cert_serial
    installation.cert_not_after = cert_not_after
    await session.execute(
        update(EnrolmentToken).where(EnrolmentToken.id == record.id)
        .values(issued_cert_serial=cert_serial, replaced_cert_serial=previous))
    if previous is not None and previous != cert_serial:
        await on_certificate_replaced(session, installation.id, previous=previous,
                                      current=cert_serial, requested_by=record.created_by_email,
                                      at=clock())


async def on_certificate_replaced(session: AsyncSession, installation_id: int, *,
                                  previous: str, current: str, requested_by: str | None,
                                  at: datetime) -> None:
    """The installation's certificate ``previous`` was replaced by ``current`` (re-enrolment).

    The control server refuses ``previous`` from the next check on (it is no longer the
    recorded serial); parts that hold state bound to the old certificate (relays' tunnels)
    hook in here.
    """
    log.info("installation %s: certificate %s replaced by %s at %s (requested by %s)",
             installation_id, previous, current, _iso(at), requested_by or "unknown")


async def enrolment_history(session: AsyncSession, actor: Actor,
                            installation_id: int) -> list[EnrolmentToken]:
    """The installation's enrolment tokens, newest first: who asked, why, when used or revoked,
    which certificate each issued and replaced (Administrator of it)."""
    await get_installation(session, actor, installation_id, Action.MANAGE_INVENTORY)
    return list((await session.scalars(
        select(EnrolmentToken).where(EnrolmentToken.installation_id == installation_id)
        .order_by(EnrolmentToken.created_at.desc(), EnrolmentToken.id.desc()))).all())


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
