"""The audit trail: every state-changing action in the portal, recorded where it happens.

Recording rules:

* **Same transaction, one INSERT.** :func:`record` adds one ``audit_events`` row to the
  caller's session, so a change and its entry commit together or not at all. A refused or
  failed change leaves no entry — except a failed sign-in, which changes nothing and is
  written in a transaction of its own (:func:`record_failed_sign_in`).
* **Who**: a :class:`Principal` — a user (id + e-mail, from the :class:`Actor`), a relay, an
  installation, or ``system`` (the CLI, the sweeper). **When**: the injected clock. **From
  where**: the :class:`Origin` of the current request (client address after the portal's
  trusted-proxy rule, user agent), set once per request by
  :class:`~ewsgate.portal.request_origin.RequestOriginMiddleware`.
* **What**: an action from :data:`ACTIONS` (an unknown name is a bug and raises) on a target
  (type from the table, id given), and the changed fields before → after as JSON snapshots
  (:func:`snapshot`). Secrets never enter the trail: any field whose name says password,
  secret, token, community or key is replaced by ``"[redacted]"`` (still showing *that* it
  changed), at any depth.
* **Append-only**: nothing here updates or deletes; migration 0008 makes the database refuse
  UPDATE and DELETE on the table.

Adding an action is one line in :data:`ACTIONS` plus the :func:`record` call where it happens.

Reading: :func:`audit_scope` turns an actor into an :class:`AuditScope` (dealer-wide, or a
set of customers; today from the ``view_audit`` permission, which Administrators hold), and
:func:`list_events` / :func:`iter_events` filter inside it, newest first, paged by id.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, false, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services.access import Action, Actor, Scope, load_tree, scope_for
from ewsgate.portal.services.errors import InvalidInput, PermissionDenied
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import AuditEvent, Job, RemoteSession, User
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "ACTIONS",
    "REDACTED",
    "SYSTEM",
    "ActionSpec",
    "AuditFilter",
    "AuditScope",
    "Origin",
    "Principal",
    "audit_scope",
    "current_origin",
    "iter_events",
    "list_events",
    "record",
    "record_failed_sign_in",
    "record_sessions_ended",
    "redact",
    "reset_origin",
    "set_origin",
    "snapshot",
]

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"password|secret|token|community|(?:^|_)keys?(?:_|$)", re.IGNORECASE)


class ActionSpec(NamedTuple):
    """What an action acts on, and how a person reads it in the trail."""

    target_type: str
    summary: str


#: Every action the trail knows. One line per action; :func:`record` refuses other names.
ACTIONS: dict[str, ActionSpec] = {
    "auth.sign_in": ActionSpec("user", "signed in"),
    "auth.sign_in_failed": ActionSpec("user", "failed to sign in"),
    "auth.sign_out": ActionSpec("user", "signed out"),
    "user.create": ActionSpec("user", "created a user"),
    "user.provision": ActionSpec("user", "created a user or added a role (CLI)"),
    "user.update": ActionSpec("user", "changed a user"),
    "user.delete": ActionSpec("user", "deleted a user"),
    "role_assignment.create": ActionSpec("role_assignment", "granted a role"),
    "role_assignment.delete": ActionSpec("role_assignment", "revoked a role"),
    "api_token.create": ActionSpec("api_token", "created an API token"),
    "api_token.delete": ActionSpec("api_token", "revoked an API token"),
    "customer.create": ActionSpec("customer", "created a customer"),
    "customer.update": ActionSpec("customer", "changed a customer"),
    "customer.delete": ActionSpec("customer", "deleted a customer"),
    "customer.contacts_update": ActionSpec("customer", "changed a customer's notification "
                                           "contacts"),
    "notification.retry": ActionSpec("notification", "queued a failed notification again"),
    "installation.create": ActionSpec("installation", "created an installation"),
    "installation.update": ActionSpec("installation", "changed an installation"),
    "installation.delete": ActionSpec("installation", "deleted an installation"),
    "installation.enrol": ActionSpec("installation", "enrolled (certificate issued)"),
    "enrolment_token.create": ActionSpec("enrolment_token", "issued an enrolment token"),
    "device.create": ActionSpec("device", "created a device"),
    "device.update": ActionSpec("device", "changed a device"),
    "device.delete": ActionSpec("device", "deleted a device"),
    "device.remote_technician": ActionSpec("device", "switched Remote Technician"),
    "device.verify_identity": ActionSpec("device", "checked the device's identity"),
    "device.reset_pins": ActionSpec("device", "reset the device's identity pins"),
    "remote_session.start": ActionSpec("remote_session", "started a Remote Technician session"),
    "remote_session.end": ActionSpec("remote_session", "ended a Remote Technician session"),
    "remote_session.terminate": ActionSpec("remote_session",
                                           "terminated another user's session"),
    "remote_session.fail": ActionSpec("remote_session", "a Remote Technician session failed"),
    "customer.policy": ActionSpec("customer", "changed the customer's Remote Technician policy"),
    "session_request.create": ActionSpec("session_request",
                                         "asked for a session that needs approval"),
    "session_request.approve": ActionSpec("session_request", "approved a session request"),
    "session_request.deny": ActionSpec("session_request", "denied a session request"),
    "relay.create": ActionSpec("relay", "registered a relay"),
    "relay.certificate": ActionSpec("relay", "issued the relay's TLS certificate"),
    "signing_key.rotate": ActionSpec("signing_key", "rotated the token signing key"),
    "signing_key.retire": ActionSpec("signing_key", "retired a token signing key"),
    "key_encryption_key.rotate": ActionSpec("key_encryption_key",
                                            "rotated the key sealing stored SNMP secrets"),
}


# -- who and from where ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acted: ``kind`` is ``user``, ``relay``, ``installation`` or ``system``."""

    kind: str
    id: str | None
    label: str | None

    @classmethod
    def of(cls, actor: Actor) -> Principal:
        return cls("user", str(actor.user_id), actor.email)

    @classmethod
    def relay(cls, relay_id: int, name: str | None) -> Principal:
        return cls("relay", str(relay_id), name)

    @classmethod
    def installation(cls, installation_id: int, name: str | None) -> Principal:
        return cls("installation", str(installation_id), name)


#: the portal itself: the admin CLI, the demo, the session sweeper
SYSTEM = Principal("system", None, "ewsgate")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from (both unknown outside a request, e.g. in the CLI)."""

    client_ip: str | None = None
    user_agent: str | None = None


_NOWHERE = Origin()
_ORIGIN: ContextVar[Origin | None] = ContextVar("ewsgate_audit_origin", default=None)


def set_origin(origin: Origin) -> Token[Origin | None]:
    """Make ``origin`` the current request's origin (the middleware does this)."""
    return _ORIGIN.set(Origin((origin.client_ip or "")[:64] or None,
                              (origin.user_agent or "")[:400] or None))


def reset_origin(token: Token[Origin | None]) -> None:
    _ORIGIN.reset(token)


def current_origin() -> Origin:
    return _ORIGIN.get() or _NOWHERE


# -- what: snapshots and redaction ----------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


def snapshot(row: Any, *fields: str) -> dict[str, Any]:
    """A row's column values as JSON-ready data (all columns, or just ``fields``).

    Secrets are still present here; :func:`record` redacts them before anything is stored.
    """
    names = fields or tuple(attr.key for attr in sa_inspect(row).mapper.column_attrs)
    return {name: _plain(getattr(row, name)) for name in names}


def redact(value: Any, *, key: str = "") -> Any:
    """``value`` with every secret-named field replaced by :data:`REDACTED` (at any depth)."""
    if key and _SECRET_NAME.search(key):
        return None if value in (None, "") else REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _changed(before: Mapping[str, Any], after: Mapping[str, Any],
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


# -- writing --------------------------------------------------------------------------------


async def record(session: AsyncSession, action: str, *, actor: Actor | Principal,
                 target_id: object = None, dealer_id: int | None = None,
                 customer_id: int | None = None, before: Mapping[str, Any] | None = None,
                 after: Mapping[str, Any] | None = None, detail: str | None = None,
                 clock: Clock = utc_now) -> AuditEvent:
    """Add one audit entry to ``session`` (committed with the caller's transaction).

    With both ``before`` and ``after`` only the fields that differ are kept; either alone is
    kept whole (a creation, a deletion). ``dealer_id`` defaults to the acting user's dealer;
    ``customer_id`` is the customer the target belongs to (None: a dealer-level object).
    """
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValueError(f"audit action {action!r} is not in ewsgate.portal.services.audit."
                         "ACTIONS; add it there (one line)")
    who = Principal.of(actor) if isinstance(actor, Actor) else actor
    if dealer_id is None and isinstance(actor, Actor):
        dealer_id = actor.dealer_id
    old = None if before is None else _plain(before)
    new = None if after is None else _plain(after)
    if old is not None and new is not None:
        old, new = _changed(old, new)
    origin = current_origin()
    event = AuditEvent(
        at=clock(), dealer_id=dealer_id, customer_id=customer_id, actor_type=who.kind,
        actor_id=who.id, actor_label=(who.label or "")[:320] or None,
        client_ip=origin.client_ip, user_agent=origin.user_agent, action=action,
        target_type=spec.target_type,
        target_id=None if target_id is None else str(target_id)[:64],
        before_state=None if old is None else redact(old),
        after_state=None if new is None else redact(new),
        detail=None if detail is None else detail[:2000])
    session.add(event)
    return event


async def record_failed_sign_in(database: Database, email: str | None, reason: str, *,
                                clock: Clock = utc_now) -> None:
    """Record a refused sign-in in its own transaction (the sign-in's own one rolls back).

    The entry names the e-mail that was tried (lower-cased, capped) and, when such a user
    exists, its id and dealer; never the password.
    """
    tried = (email or "").strip().lower()[:320]
    async with database.transaction() as session:
        user = await session.scalar(select(User).where(User.email == tried)) if tried else None
        who = Principal("user", str(user.id) if user else None, tried or None)
        await record(session, "auth.sign_in_failed", actor=who,
                     target_id=user.id if user else None,
                     dealer_id=user.dealer_id if user else None, detail=reason, clock=clock)


async def record_sessions_ended(session: AsyncSession, which: ColumnElement[bool], reason: str,
                                *, clock: Clock = utc_now) -> None:
    """One ``remote_session.end`` entry (actor ``system``, ``reason`` as detail) per live
    session matching ``which``, for a bulk end caused by another action (a device switched
    off or deleted, a user signed out or removed, an installation revoked) — call it just
    before the bulk UPDATE; the causing action has its own entry naming who did it."""
    rows = await session.execute(
        select(RemoteSession.id, Job.dealer_id, Job.customer_id)
        .join(Job, Job.id == RemoteSession.job_id)
        .where(which, RemoteSession.status.in_(_LIVE_SESSION)))
    for session_id, dealer_id, customer_id in rows.all():
        await record(session, "remote_session.end", actor=SYSTEM, target_id=session_id,
                     dealer_id=dealer_id, customer_id=customer_id, after={"status": "ended"},
                     detail=reason, clock=clock)


_LIVE_SESSION = ("verifying", "connecting", "ready")


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditScope:
    """The part of the trail a reader may see: one dealer's, whole or some customers'.

    A dealer-wide reader also sees entries that belong to no dealer (relay registrations,
    sign-in attempts for unknown e-mails). Customer Approvers will get a customer scope.
    """

    dealer_id: int
    dealer_wide: bool
    customer_ids: frozenset[int]

    @classmethod
    def of(cls, dealer_id: int, scope: Scope) -> AuditScope:
        return cls(dealer_id, scope.dealer_wide, scope.customer_ids)

    @property
    def empty(self) -> bool:
        return not self.dealer_wide and not self.customer_ids

    def require(self) -> AuditScope:
        """This scope, or :class:`PermissionDenied` when it shows nothing (a reader without
        the ``view_audit`` permission anywhere): the API and the page answer 403."""
        if self.empty:
            raise PermissionDenied("the audit trail is for administrators; ask one for the "
                                   "administrator role", code="forbidden")
        return self

    def where(self) -> ColumnElement[bool]:
        if self.empty:
            return false()
        if self.dealer_wide:
            return or_(AuditEvent.dealer_id == self.dealer_id, AuditEvent.dealer_id.is_(None))
        return (AuditEvent.dealer_id == self.dealer_id) & AuditEvent.customer_id.in_(
            sorted(self.customer_ids))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Filters of the trail; ``actor`` matches the e-mail/name or the id of who acted."""

    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"{name} needs a time zone, e.g. 2026-12-04T10:00:00Z",
                                   field=name)


async def audit_scope(session: AsyncSession, actor: Actor) -> AuditScope:
    """The part of the trail ``actor`` may read (from the ``view_audit`` permission; empty
    for everyone else — :meth:`AuditScope.require` turns that into 403)."""
    tree = await load_tree(session, actor.dealer_id)
    return AuditScope.of(actor.dealer_id, scope_for(actor, Action.VIEW_AUDIT, tree))


def _query(scope: AuditScope, filters: AuditFilter, cursor: int | None) -> Select[AuditEvent]:
    query = select(AuditEvent).where(scope.where())
    if filters.actor:
        needle = filters.actor.strip()
        query = query.where(or_(AuditEvent.actor_label == needle.lower(),
                                AuditEvent.actor_label == needle,
                                AuditEvent.actor_id == needle))
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.target_type:
        query = query.where(AuditEvent.target_type == filters.target_type)
    if filters.target_id:
        query = query.where(AuditEvent.target_id == filters.target_id)
    if filters.since is not None:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.at < filters.until)
    if cursor is not None:
        query = query.where(AuditEvent.id < cursor)
    return query.order_by(AuditEvent.id.desc())


async def list_events(session: AsyncSession, scope: AuditScope, filters: AuditFilter, *,
                      limit: int = 100, cursor: int | None = None) -> list[AuditEvent]:
    """Entries in ``scope`` matching ``filters``, newest first, older than ``cursor`` (an id)."""
    rows = await session.scalars(_query(scope, filters, cursor).limit(max(1, min(limit, 1000))))
    return list(rows.all())


async def iter_events(database: Database, scope: AuditScope, filters: AuditFilter, *,
                      cursor: int | None = None, batch: int = 500) -> AsyncIterator[AuditEvent]:
    """Every matching entry, newest first, read in batches of short transactions (for
    streamed exports; the table is append-only, so paging by id neither skips nor repeats)."""
    while True:
        async with database.transaction() as session:
            rows = await list_events(session, scope, filters, limit=batch, cursor=cursor)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        cursor = rows[-1].id
