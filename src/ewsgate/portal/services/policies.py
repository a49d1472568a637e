"""Customer policies in the database: read, set, and the effective policy of a device.

The rules themselves are pure (:mod:`ewsgate.portal.policy`); this module stores each
customer's own settings (:class:`~ewsgate.portal.store.models.CustomerPolicy`) and walks the
customer chain for :func:`~ewsgate.portal.policy.effective_policy`. Reading needs the customer
to be visible (any role, Customer Approvers and Viewers included); setting needs the
``manage_policy`` action (Administrators). Changes go through :func:`record_change`, which
writes the audit entry (``customer.policy``, before → after) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.policy import Policy, PolicyError, effective_policy, parse_policy
from ewsgate.portal.services.access import Action, Actor, CustomerTree, load_tree, require
from ewsgate.portal.services.errors import InvalidInput, NotFound
from ewsgate.portal.store.models import Customer, CustomerPolicy
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "effective_for_customer",
    "get_effective_policy",
    "get_policy",
    "record_change",
    "set_policy",
    "subscribe",
]

#: called with (session, actor, customer id, before, after) on every policy change; the audit
#: trail subscribes here
PolicyListener = Callable[[AsyncSession, Actor, int, dict[str, Any] | None, dict[str, Any]],
                          Any]
_listeners: list[PolicyListener] = []


async def _customer(session: AsyncSession, actor: Actor, customer_id: int) -> CustomerTree:
    customer = await session.get(Customer, customer_id)
    if customer is None or customer.dealer_id != actor.dealer_id:
        raise NotFound.of("customer", customer_id)
    return await load_tree(session, actor.dealer_id)


async def get_policy(session: AsyncSession, actor: Actor, customer_id: int) -> Policy:
    """The customer's own settings (fields not set are inherited)."""
    tree = await _customer(session, actor, customer_id)
    require(actor, Action.VIEW, tree, customer_id, kind="customer", ident=customer_id)
    row = await session.get(CustomerPolicy, customer_id)
    return parse_policy(row.settings) if row else Policy()


async def set_policy(session: AsyncSession, actor: Actor, customer_id: int,
                     data: Mapping[str, Any], *, clock: Clock = utc_now) -> Policy:
    """Replace the customer's own settings with ``data`` (the policy's JSON form)."""
    tree = await _customer(session, actor, customer_id)
    require(actor, Action.MANAGE_POLICY, tree, customer_id, kind="customer", ident=customer_id)
    try:
        policy = parse_policy(data)
    except PolicyError as exc:
        raise InvalidInput(str(exc), code="invalid_policy") from None
    row = await session.get(CustomerPolicy, customer_id)
    before = dict(row.settings) if row else None
    after = policy.as_json()
    if row is None:
        session.add(CustomerPolicy(customer_id=customer_id, settings=after, updated_at=clock(),
                                   updated_by=actor.email))
    else:
        row.settings = after
        row.updated_at = clock()
        row.updated_by = actor.email
    await session.flush()
    await record_change(session, actor, customer_id, before, after)
    return policy


async def record_change(session: AsyncSession, actor: Actor, customer_id: int,
                        before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """Record a policy change in the audit trail (same transaction) and tell subscribers."""
    from ewsgate.portal.services import audit

    await audit.record(session, "customer.policy", actor=actor, target_id=customer_id,
                       customer_id=customer_id, before=before, after=after)
    for listener in list(_listeners):
        result = listener(session, actor, customer_id, before, after)
        if hasattr(result, "__await__"):
            await result


def subscribe(listener: PolicyListener) -> Callable[[], None]:
    """Subscribe to policy changes; returns the function that unsubscribes."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


async def effective_for_customer(session: AsyncSession, customer_id: int | None,
                                 tree: CustomerTree) -> Policy:
    """The policy in force on ``customer_id`` (no access check: the caller did it)."""
    if customer_id is None:
        return effective_policy(())
    chain_ids = [*reversed(tree.ancestors(customer_id)), customer_id]
    chain: list[Policy | None] = []
    for cid in chain_ids:
        row = await session.get(CustomerPolicy, cid)
        chain.append(parse_policy(row.settings) if row else None)
    return effective_policy(chain)


async def get_effective_policy(session: AsyncSession, actor: Actor,
                               customer_id: int) -> Policy:
    """The policy in force on a customer the actor can see."""
    tree = await _customer(session, actor, customer_id)
    require(actor, Action.VIEW, tree, customer_id, kind="customer", ident=customer_id)
    return await effective_for_customer(session, customer_id, tree)
