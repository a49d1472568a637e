"""Who may do what, where: roles, actions, scopes. The single rule book of the portal.

A user holds any number of role assignments. Each assignment grants one role over a scope:
the whole dealer (``customer_id`` is None) or one customer *and every customer nested below it*.
Roles are not ranked; each grants a fixed set of actions (:data:`PERMISSIONS`)::

    role            view  manage_inventory  manage_access  configure_remote_technician  open_session
    administrator    x          x                x
    configurer       x                                              x
    user             x                                                                      x
    viewer           x
    approver         x

    role            approve_session  manage_policy  view_audit
    administrator         x               x             x
    approver              x                             x

A Customer Approver (``approver``) is a customer's own user: scoped to its subtree, it sees the
devices, every session on them and the policy, and answers session requests there. Only an
Administrator changes a policy (a child customer's policy can only tighten its parent's).

Administrators and Customer Approvers hold ``view_audit`` (read the audit trail of their
scope).

An object (customer, installation, device, job) belongs to one customer. For an action on it:

1. if no assignment of the caller (any role) covers that customer → :class:`NotFound`
   (the object is invisible; the caller cannot tell it from a missing one);
2. else, if no assignment whose role grants the action covers it → :class:`PermissionDenied`;
3. else the action is allowed.

Users and role assignments are dealer-level objects: see :mod:`ewsgate.portal.services.users`.
Every check goes through :func:`scope_for` / :func:`require`; nothing else decides access.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services.errors import NotFound, PermissionDenied
from ewsgate.portal.store.models import Customer, RoleAssignment, User

__all__ = [
    "PERMISSIONS",
    "Action",
    "Actor",
    "Assignment",
    "CustomerTree",
    "Scope",
    "actor_for",
    "load_tree",
    "require",
    "scope_for",
]


class Action(StrEnum):
    """What a role may do; see the table in the module docstring."""

    VIEW = "view"
    MANAGE_INVENTORY = "manage_inventory"
    MANAGE_ACCESS = "manage_access"
    CONFIGURE_REMOTE_TECHNICIAN = "configure_remote_technician"
    OPEN_SESSION = "open_session"
    APPROVE_SESSION = "approve_session"
    MANAGE_POLICY = "manage_policy"
    VIEW_AUDIT = "view_audit"


PERMISSIONS: dict[str, frozenset[Action]] = {
    "administrator": frozenset({Action.VIEW, Action.MANAGE_INVENTORY, Action.MANAGE_ACCESS,
                                Action.APPROVE_SESSION, Action.MANAGE_POLICY,
                                Action.VIEW_AUDIT}),
    "configurer": frozenset({Action.VIEW, Action.CONFIGURE_REMOTE_TECHNICIAN}),
    "user": frozenset({Action.VIEW, Action.OPEN_SESSION}),
    "viewer": frozenset({Action.VIEW}),
    "approver": frozenset({Action.VIEW, Action.APPROVE_SESSION, Action.VIEW_AUDIT}),
}


@dataclass(frozen=True, slots=True)
class Assignment:
    """One role over the dealer (``customer_id`` None) or a customer subtree."""

    role: str
    customer_id: int | None


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller, as the service layer sees it (detached from any DB session).

    Built by :mod:`ewsgate.portal.auth` from a web session or an API token; tests build it
    with :func:`ewsgate.portal.services.users.actor_for`.
    """

    user_id: int
    dealer_id: int
    email: str
    name: str
    assignments: tuple[Assignment, ...] = ()
    #: ``"session"`` (cookie), ``"token"`` (bearer) or ``"cli"``
    via: str = "session"

    def roles(self) -> frozenset[str]:
        return frozenset(a.role for a in self.assignments)

    def can_anywhere(self, action: Action) -> bool:
        """True when some assignment grants ``action`` (on some scope)."""
        return any(action in PERMISSIONS.get(a.role, ()) for a in self.assignments)

    def can_dealer_wide(self, action: Action) -> bool:
        """True when a dealer-wide assignment grants ``action``."""
        return any(a.customer_id is None and action in PERMISSIONS.get(a.role, ())
                   for a in self.assignments)


@dataclass(frozen=True, slots=True)
class CustomerTree:
    """The dealer's customers as ``id → parent_id`` (loaded once per call)."""

    parents: dict[int, int | None]
    children: dict[int | None, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int | None]]) -> CustomerTree:
        parents = dict(pairs)
        children: dict[int | None, list[int]] = {}
        for child, parent in parents.items():
            children.setdefault(parent, []).append(child)
        return cls(parents, children)

    def subtree(self, root: int) -> set[int]:
        """``root`` and every customer below it (iterative; safe on deep trees)."""
        if root not in self.parents:
            return set()
        seen = {root}
        stack = [root]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def ancestors(self, node: int) -> list[int]:
        """Parents of ``node`` from nearest to the root (stops on a cycle)."""
        out: list[int] = []
        current = self.parents.get(node)
        while current is not None and current not in out and current != node:
            out.append(current)
            current = self.parents.get(current)
        return out


@dataclass(frozen=True, slots=True)
class Scope:
    """The customers an action is allowed on: the whole dealer, or a set of customer ids."""

    dealer_wide: bool
    customer_ids: frozenset[int]

    def covers(self, customer_id: int | None) -> bool:
        """Whether an object of ``customer_id`` (None: a dealer-level object) is in scope.

        ``customer_ids`` only ever holds the actor's own dealer's customers, so an object of
        another dealer is never covered, even by a dealer-wide scope.
        """
        if customer_id is None:
            return self.dealer_wide
        return customer_id in self.customer_ids

    @property
    def empty(self) -> bool:
        return not self.dealer_wide and not self.customer_ids


async def load_tree(session: AsyncSession, dealer_id: int) -> CustomerTree:
    """The dealer's customer tree."""
    rows = await session.execute(
        select(Customer.id, Customer.parent_id).where(Customer.dealer_id == dealer_id))
    return CustomerTree.of((row[0], row[1]) for row in rows)


def scope_for(actor: Actor, action: Action, tree: CustomerTree) -> Scope:
    """The customers on which ``actor`` may perform ``action``."""
    ids: set[int] = set()
    for assignment in actor.assignments:
        if action not in PERMISSIONS.get(assignment.role, ()):
            continue
        if assignment.customer_id is None:
            return Scope(True, frozenset(tree.parents))
        ids |= tree.subtree(assignment.customer_id)
    return Scope(False, frozenset(ids))


def require(actor: Actor, action: Action, tree: CustomerTree, customer_id: int | None,
            *, kind: str, ident: object) -> None:
    """Raise unless ``actor`` may do ``action`` on an object of ``customer_id``.

    Invisible (no role at all covers it) → :class:`NotFound` naming ``kind`` and ``ident``;
    visible but not allowed → :class:`PermissionDenied`.
    """
    if not scope_for(actor, Action.VIEW, tree).covers(customer_id):
        raise NotFound.of(kind, ident)
    if not scope_for(actor, action, tree).covers(customer_id):
        raise PermissionDenied(
            f"your roles do not allow '{action.value}' on {kind} {ident}; "
            f"ask an administrator for the {_role_for(action)} role",
            code="forbidden")


def _role_for(action: Action) -> str:
    for role, actions in PERMISSIONS.items():
        if action in actions:
            return role
    return "administrator"  # pragma: no cover


async def actor_for(session: AsyncSession, user: User, *, via: str = "session") -> Actor:
    """The :class:`Actor` for ``user``, with its current role assignments."""
    rows = await session.execute(
        select(RoleAssignment.role, RoleAssignment.customer_id).where(
            RoleAssignment.user_id == user.id, RoleAssignment.dealer_id == user.dealer_id)
        .order_by(RoleAssignment.id))
    return Actor(user_id=user.id, dealer_id=user.dealer_id, email=user.email, name=user.name,
                 assignments=tuple(Assignment(role, customer) for role, customer in rows),
                 via=via)
