"""The notification outbox: rows written with the change they tell of, drained by a worker.

Rules:

1. :func:`notify` runs inside the caller's transaction: the rows exist if and only if the
   session change commits. It writes one row per recipient and channel, so a bad address
   never holds back the others.
2. :func:`claim` takes due rows (``pending``, or ``sending`` whose lease ran out because a
   worker died) and leases them (``sending`` until now + lease, ``attempts + 1``) in one short
   transaction; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so two portal replicas never
   claim the same row. SQLite has one writer at a time (one portal process).
3. :func:`record_delivered` / :func:`record_failure` apply only to the lease they were given
   (``status = 'sending' AND attempts = <claimed>``): a worker whose lease expired and whose row
   was re-claimed cannot overwrite the newer attempt's outcome.
4. A failed attempt is retried after :func:`backoff` (exponential, capped, with jitter so that
   many failed rows do not retry in lockstep) until ``max_attempts``; then the row is
   ``failed`` and stays for people to see (and :func:`retry` can queue it again).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.events import APPROVER_EVENTS, check_kind
from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, scope_for
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound
from ewsgate.portal.store.models import (
    NOTIFICATION_STATUSES,
    Customer,
    CustomerContacts,
    Notification,
)

__all__ = ["Claimed", "RetryPolicy", "backoff", "claim", "list_notifications", "notify",
           "prune", "record_delivered", "record_failure", "retry", "status_counts"]

_MAX_ERROR = 2000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a delivery is retried."""

    max_attempts: int = 8
    base_seconds: float = 10.0
    cap_seconds: float = 900.0
    #: how long a claimed row is a worker's before another may take it
    lease_seconds: float = 120.0
    #: delivered rows are deleted after this long; failed ones (people must see them) later
    keep_delivered: timedelta = timedelta(days=30)
    keep_failed: timedelta = timedelta(days=90)


def backoff(attempts: int, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base·2^(attempts-1)``
    capped, then between half and all of it (equal jitter)."""
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2.0 ** max(0, attempts - 1))
    return float(ceiling / 2 + ceiling / 2 * rng())


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased row, detached: what the worker needs to deliver it."""

    id: int
    kind: str
    channel: str
    target: str
    payload: dict[str, Any]
    customer_id: int | None
    #: the customer whose contacts named the target (its webhook secret signs)
    source_customer_id: int | None
    attempts: int


async def notify(session: AsyncSession, kind: str, *, dealer_id: int, customer_id: int | None,
                 data: Mapping[str, Any], now: datetime,
                 approver_emails: Iterable[str] = ()) -> list[Notification]:
    """Queue event ``kind`` for the customer's contacts (the customer's and its ancestors'
    e-mail addresses and webhooks) or, for a request, for ``approver_emails``; the rows
    written (none when nobody is to be told)."""
    check_kind(kind)
    chain: list[int] = []
    customer_name = None
    if customer_id is not None:
        tree = await load_tree(session, dealer_id)
        chain = [customer_id, *tree.ancestors(customer_id)]
        customer = await session.get(Customer, customer_id)
        customer_name = customer.name if customer else None
    payload = {**data, "customer_id": customer_id, "customer_name": customer_name}
    targets: list[tuple[str, str, int | None]] = []
    if kind in APPROVER_EVENTS:
        targets += [("email", e.strip().lower(), None) for e in approver_emails if e.strip()]
    if chain:
        contacts = {c.customer_id: c for c in (await session.scalars(
            select(CustomerContacts).where(CustomerContacts.customer_id.in_(chain)))).all()}
        for cid in chain:
            found = contacts.get(cid)
            if found is None:
                continue
            if kind not in APPROVER_EVENTS:
                targets += [("email", e, cid) for e in found.emails]
            if found.webhook_url:
                # the webhook hears of every event; the body's ``type`` tells them apart
                targets.append(("webhook", found.webhook_url, cid))
    rows = []
    seen: set[tuple[str, str]] = set()
    for channel, target, source in targets:
        if (channel, target) in seen:
            continue
        seen.add((channel, target))
        row = Notification(dealer_id=dealer_id, customer_id=customer_id, kind=kind,
                           channel=channel, target=target, source_customer_id=source,
                           payload=payload, status="pending",
                           attempts=0, next_attempt_at=now, created_at=now)
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows


async def claim(session: AsyncSession, *, now: datetime, policy: RetryPolicy,
                channels: Iterable[str] = ("email", "webhook"), limit: int = 20) -> list[Claimed]:
    """Lease up to ``limit`` due rows of ``channels`` (rule 2); commit the caller's transaction
    to hold them. A channel the portal cannot send on (no SMTP server) is left pending."""
    query = (select(Notification)
             .where(Notification.status.in_(("pending", "sending")),
                    Notification.channel.in_(tuple(channels)),
                    Notification.next_attempt_at <= now)
             .order_by(Notification.next_attempt_at, Notification.id).limit(limit)
             .with_for_update(skip_locked=True))
    rows = list((await session.scalars(query)).all())
    lease_until = now + timedelta(seconds=policy.lease_seconds)
    claimed = []
    for row in rows:
        row.status = "sending"
        row.attempts += 1
        row.next_attempt_at = lease_until
        claimed.append(Claimed(id=row.id, kind=row.kind, channel=row.channel,
                               target=row.target, payload=dict(row.payload),
                               customer_id=row.customer_id,
                               source_customer_id=row.source_customer_id,
                               attempts=row.attempts))
    await session.flush()
    return claimed


async def record_delivered(session: AsyncSession, item: Claimed, *, now: datetime) -> bool:
    """Mark ``item`` delivered (rule 3); False when its lease was lost."""
    result = await session.execute(
        update(Notification)
        .where(Notification.id == item.id, Notification.status == "sending",
               Notification.attempts == item.attempts)
        .values(status="delivered", delivered_at=now, last_error=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_failure(session: AsyncSession, item: Claimed, error: str, *, now: datetime,
                         policy: RetryPolicy, permanent: bool = False,
                         rng: Callable[[], float] = random.random) -> str | None:
    """Record a failed attempt (rules 3 and 4): the row's new status (``pending`` to retry, or
    ``failed``), or None when the lease was lost. ``permanent``: retrying cannot help."""
    gave_up = permanent or item.attempts >= policy.max_attempts
    status = "failed" if gave_up else "pending"
    later = now + timedelta(seconds=0 if gave_up else backoff(item.attempts, policy, rng))
    result = await session.execute(
        update(Notification)
        .where(Notification.id == item.id, Notification.status == "sending",
               Notification.attempts == item.attempts)
        .values(status=status, next_attempt_at=later, last_error=error[:_MAX_ERROR]))
    return status if result.rowcount else None  # type: ignore[attr-defined]


async def list_notifications(session: AsyncSession, actor: Actor, *, status: str | None = None,
                             customer_id: int | None = None,
                             limit: int = 100) -> list[Notification]:
    """Notifications of customers the actor administers, newest first."""
    if status is not None and status not in NOTIFICATION_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(NOTIFICATION_STATUSES)}, not "
                           f"{status!r}", field="status")
    tree = await load_tree(session, actor.dealer_id)
    scope = scope_for(actor, Action.MANAGE_ACCESS, tree)
    if scope.empty:
        return []
    query = select(Notification).where(Notification.dealer_id == actor.dealer_id)
    if not scope.dealer_wide:
        query = query.where(Notification.customer_id.in_(scope.customer_ids))
    if status is not None:
        query = query.where(Notification.status == status)
    if customer_id is not None:
        query = query.where(Notification.customer_id == customer_id)
    query = query.order_by(Notification.id.desc()).limit(max(1, min(limit, 500)))
    return list((await session.scalars(query)).all())


async def status_counts(session: AsyncSession, actor: Actor) -> dict[str, int]:
    """How many notifications of the customers the actor administers are in each status
    (the same for every replica: it is read from the outbox, not from a process)."""
    counts = dict.fromkeys(NOTIFICATION_STATUSES, 0)
    tree = await load_tree(session, actor.dealer_id)
    scope = scope_for(actor, Action.MANAGE_ACCESS, tree)
    if scope.empty:
        return counts
    query = (select(Notification.status, func.count())
             .where(Notification.dealer_id == actor.dealer_id).group_by(Notification.status))
    if not scope.dealer_wide:
        query = query.where(Notification.customer_id.in_(scope.customer_ids))
    for status, count in (await session.execute(query)).all():
        counts[str(status)] = int(count)
    return counts


async def retry(session: AsyncSession, actor: Actor, notification_id: int, *,
                now: datetime) -> Notification:
    """Queue a ``failed`` notification again (an Administrator over its customer)."""
    row = await session.get(Notification, notification_id)
    tree = await load_tree(session, actor.dealer_id)
    if row is None or row.dealer_id != actor.dealer_id or not scope_for(
            actor, Action.MANAGE_ACCESS, tree).covers(row.customer_id):
        raise NotFound.of("notification", notification_id)
    if row.status != "failed":
        raise Conflict(f"notification {notification_id} is {row.status}; only a failed one "
                       "can be retried", code="not_failed")
    before = {"status": row.status, "attempts": row.attempts, "last_error": row.last_error}
    row.status, row.attempts, row.next_attempt_at = "pending", 0, now
    await session.flush()
    await audit.record(session, "notification.retry", actor=actor, target_id=row.id,
                       customer_id=row.customer_id, before=before,
                       after={"status": row.status, "attempts": 0,
                              "last_error": row.last_error},
                       detail=f"{row.kind} by {row.channel} to {row.target}",
                       clock=lambda: now)
    return row


async def prune(session: AsyncSession, *, now: datetime, policy: RetryPolicy) -> int:
    """Delete delivered rows older than ``keep_delivered`` and failed ones older than
    ``keep_failed``; pending rows are never deleted. How many rows went."""
    result = await session.execute(delete(Notification).where(
        ((Notification.status == "delivered")
         & (Notification.created_at < now - policy.keep_delivered))
        | ((Notification.status == "failed")
           & (Notification.created_at < now - policy.keep_failed))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
