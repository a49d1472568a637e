"""Customers: a dealer's tree of customers (nested by ``parent_id``).

Every function takes the open session, the :class:`Actor` and plain values; it checks access
with :mod:`.access`, validates with :mod:`.validation`, writes, and flushes (so constraint
errors surface here). The caller owns the transaction (``Database.transaction()``), so an error
leaves nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, require, scope_for
from ewsgate.portal.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ewsgate.portal.services.validation import check_known, clean_int, clean_text
from ewsgate.portal.store.models import Customer, Installation
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "create_customer",
    "customer_path",
    "delete_customer",
    "get_customer",
    "list_customers",
    "update_customer",
]

_FIELDS = frozenset({"name", "parent_id"})


async def list_customers(session: AsyncSession, actor: Actor, *, search: str | None = None,
                         parent_id: int | None = None) -> list[Customer]:
    """Customers the actor can see (any role), by name; ``search`` matches the name
    (case-insensitive substring); ``parent_id`` keeps the direct children of one customer."""
    tree = await load_tree(session, actor.dealer_id)
    visible = scope_for(actor, Action.VIEW, tree)
    if visible.empty:
        return []
    query = select(Customer).where(Customer.dealer_id == actor.dealer_id,
                                   Customer.id.in_(visible.customer_ids))
    if search:
        query = query.where(func.lower(Customer.name).contains(search.strip().lower()))
    if parent_id is not None:
        query = query.where(Customer.parent_id == parent_id)
    return list((await session.scalars(query.order_by(Customer.name, Customer.id))).all())


async def get_customer(session: AsyncSession, actor: Actor, customer_id: int) -> Customer:
    """The customer, if the actor can see it; else :class:`NotFound`."""
    customer = await session.get(Customer, customer_id)
    tree = await load_tree(session, actor.dealer_id)
    if customer is None or customer.dealer_id != actor.dealer_id:
        raise NotFound.of("customer", customer_id)
    require(actor, Action.VIEW, tree, customer.id, kind="customer", ident=customer_id)
    return customer


async def customer_path(session: AsyncSession, actor: Actor, customer_id: int) -> list[Customer]:
    """The customer and its visible ancestors, root first (for breadcrumbs)."""
    customer = await get_customer(session, actor, customer_id)
    tree = await load_tree(session, actor.dealer_id)
    visible = scope_for(actor, Action.VIEW, tree)
    chain = [c for c in reversed(tree.ancestors(customer.id)) if visible.covers(c)]
    rows = {c.id: c for c in (await session.scalars(
        select(Customer).where(Customer.id.in_(chain)))).all()} if chain else {}
    return [rows[c] for c in chain if c in rows] + [customer]


async def create_customer(session: AsyncSession, actor: Actor, values: Mapping[str, Any], *,
                          clock: Clock = utc_now) -> Customer:
    """Create a customer. ``values``: ``name`` (required), ``parent_id`` (optional).

    A top-level customer needs a dealer-wide Administrator; a nested one needs an
    Administrator of the parent. Unknown fields → :class:`InvalidInput`.
    """
    check_known(values, _FIELDS)
    name = clean_text("name", values.get("name"))
    parent_id = _clean_parent(values.get("parent_id"))
    tree = await load_tree(session, actor.dealer_id)
    if parent_id is None:
        if not actor.can_dealer_wide(Action.MANAGE_INVENTORY):
            raise PermissionDenied("only a dealer-wide administrator can create a top-level "
                                   "customer; choose a parent customer in your scope")
    else:
        if parent_id not in tree.parents:
            raise NotFound(f"parent customer {parent_id} does not exist or is not visible to you",
                           field="parent_id")
        require(actor, Action.MANAGE_INVENTORY, tree, parent_id, kind="customer",
                ident=parent_id)
    customer = Customer(dealer_id=actor.dealer_id, parent_id=parent_id, name=name,
                        created_at=clock())
    session.add(customer)
    await session.flush()
    await audit.record(session, "customer.create", actor=actor, target_id=customer.id,
                       customer_id=customer.id, after=audit.snapshot(customer), clock=clock)
    return customer


async def update_customer(session: AsyncSession, actor: Actor, customer_id: int,
                          changes: Mapping[str, Any]) -> Customer:
    """Rename or move a customer (Administrator of it, and of the new parent).

    Moving a customer below itself or one of its descendants is refused with
    ``code="customer_cycle"`` (field ``parent_id``); moving to the top level needs a
    dealer-wide Administrator.
    """
    check_known(changes, _FIELDS)
    customer = await get_customer(session, actor, customer_id)
    tree = await load_tree(session, actor.dealer_id)
    require(actor, Action.MANAGE_INVENTORY, tree, customer.id, kind="customer", ident=customer_id)
    before = audit.snapshot(customer)
    if "name" in changes:
        customer.name = clean_text("name", changes["name"])
    if "parent_id" in changes:
        parent_id = _clean_parent(changes["parent_id"])
        if parent_id is None:
            if customer.parent_id is not None and not actor.can_dealer_wide(
                    Action.MANAGE_INVENTORY):
                raise PermissionDenied("only a dealer-wide administrator can make a customer "
                                       "top-level", field="parent_id")
        elif parent_id != customer.parent_id:
            if parent_id not in tree.parents:
                raise NotFound(f"parent customer {parent_id} does not exist or is not visible "
                               "to you", field="parent_id")
            require(actor, Action.MANAGE_INVENTORY, tree, parent_id, kind="customer",
                    ident=parent_id)
            if parent_id in tree.subtree(customer.id):
                raise InvalidInput(
                    f"parent_id: customer {customer.id} cannot be moved below customer "
                    f"{parent_id}: "
                    f"{parent_id} is {'itself' if parent_id == customer.id else 'nested inside it'}"
                    "; that would make a cycle", code="customer_cycle", field="parent_id")
        customer.parent_id = parent_id
    await session.flush()
    await audit.record(session, "customer.update", actor=actor, target_id=customer.id,
                       customer_id=customer.id, before=before, after=audit.snapshot(customer))
    return customer


async def delete_customer(session: AsyncSession, actor: Actor, customer_id: int) -> None:
    """Delete an empty customer (no sub-customers, no installations); Administrator of it.

    A non-empty customer → :class:`Conflict` ``customer_not_empty`` (delete or move its
    contents first). Role assignments scoped to it go with it.
    """
    customer = await get_customer(session, actor, customer_id)
    tree = await load_tree(session, actor.dealer_id)
    require(actor, Action.MANAGE_INVENTORY, tree, customer.id, kind="customer", ident=customer_id)
    children = len(tree.children.get(customer.id, ()))
    installations = await session.scalar(
        select(func.count()).select_from(Installation).where(
            Installation.customer_id == customer.id)) or 0
    if children or installations:
        raise Conflict(f"customer {customer.id} still has {children} sub-customer(s) and "
                       f"{installations} installation(s); delete or move them first",
                       code="customer_not_empty")
    await audit.record(session, "customer.delete", actor=actor, target_id=customer.id,
                       customer_id=customer.parent_id, before=audit.snapshot(customer))
    await session.delete(customer)
    await session.flush()


def _clean_parent(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return clean_int("parent_id", value, low=1, high=2**31 - 1)
