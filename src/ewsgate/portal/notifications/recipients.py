"""Who answers a session request: the approvers of a customer, for ``session_requested``.

An approver is an active user holding an approving role over the customer: assigned on the
customer itself, on one of its ancestors, or dealer-wide. The roles are a parameter: today
Administrators approve; the Customer Approver role of the approval workflow is one more name.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services.access import load_tree
from ewsgate.portal.store.models import RoleAssignment, User

__all__ = ["APPROVING_ROLES", "approver_emails"]

APPROVING_ROLES: tuple[str, ...] = ("approver", "administrator")


async def approver_emails(session: AsyncSession, *, dealer_id: int, customer_id: int,
                          roles: Iterable[str] = APPROVING_ROLES) -> list[str]:
    """The e-mail addresses of the customer's approvers, sorted, each once."""
    tree = await load_tree(session, dealer_id)
    chain = [customer_id, *tree.ancestors(customer_id)]
    query = (select(User.email).join(RoleAssignment, RoleAssignment.user_id == User.id)
             .where(User.dealer_id == dealer_id, User.active.is_(True),
                    RoleAssignment.dealer_id == dealer_id,
                    RoleAssignment.role.in_(tuple(roles)),
                    or_(RoleAssignment.customer_id.is_(None),
                        RoleAssignment.customer_id.in_(chain))))
    return sorted(set((await session.scalars(query)).all()))
