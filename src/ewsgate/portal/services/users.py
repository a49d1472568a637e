"""Users, role assignments and personal API tokens.

Users belong to a dealer. Access rules (the rest of the rule book is in :mod:`.access`):

* list/get users: an Administrator (any scope) sees the dealer's users; anyone sees themself;
  other users are :class:`NotFound`;
* create, edit, deactivate, delete users: a dealer-wide Administrator only; a user may change
  their own name and password (giving the current password);
* role assignments: an Administrator grants, lists and revokes assignments whose scope lies
  inside their own Administrator scope (a customer Administrator manages its subtree); the
  last dealer-wide Administrator assignment cannot be revoked, and its holder cannot be
  deleted or deactivated, so a dealer can never lock itself out;
* API tokens: each user manages their own.

:func:`provision_user` is the trusted path for ``ewsgate admin create-user`` and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, scope_for
from ewsgate.portal.services.credentials import (
    hash_password,
    hash_secret,
    new_secret,
    verify_password,
)
from ewsgate.portal.services.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from ewsgate.portal.services.validation import (
    check_known,
    clean_bool,
    clean_choice,
    clean_email,
    clean_int,
    clean_password,
    clean_text,
)
from ewsgate.portal.sessions.revocation import end_user_sessions
from ewsgate.portal.store.models import ROLES, ApiToken, Customer, Dealer, RoleAssignment, User
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "API_TOKEN_PREFIX",
    "IssuedApiToken",
    "create_api_token",
    "create_dealer",
    "create_role_assignment",
    "create_user",
    "delete_api_token",
    "delete_role_assignment",
    "delete_user",
    "get_user",
    "issue_api_token",
    "list_api_tokens",
    "list_role_assignments",
    "list_users",
    "provision_user",
    "update_user",
]

API_TOKEN_PREFIX = "ewst_"
_CREATE_FIELDS = frozenset({"email", "name", "password", "active"})
_ADMIN_UPDATE = frozenset({"email", "name", "password", "active"})
_SELF_UPDATE = frozenset({"name", "password", "current_password"})
_ASSIGN_FIELDS = frozenset({"user_id", "role", "customer_id"})


@dataclass(frozen=True, slots=True)
class IssuedApiToken:
    """A new API token: ``token`` is the plaintext, shown once."""

    token: str
    record: ApiToken


async def issue_api_token(session: AsyncSession, user_id: int, name: str, *,
                          clock: Clock = utc_now) -> IssuedApiToken:
    """Create a personal API token for ``user_id`` (no access check: callers check first)."""
    token = new_secret(API_TOKEN_PREFIX)
    record = ApiToken(user_id=user_id, name=name, token_hash=hash_secret(token),
                      created_at=clock())
    session.add(record)
    await session.flush()
    return IssuedApiToken(token, record)


async def list_users(session: AsyncSession, actor: Actor, *,
                     search: str | None = None) -> list[User]:
    """The dealer's users for an Administrator (any scope); just the actor otherwise."""
    query = select(User).where(User.dealer_id == actor.dealer_id)
    if not actor.can_anywhere(Action.MANAGE_ACCESS):
        query = query.where(User.id == actor.user_id)
    if search and search.strip():
        needle = search.strip().lower()
        query = query.where(func.lower(User.email).contains(needle)
                            | func.lower(User.name).contains(needle))
    return list((await session.scalars(query.order_by(User.email))).all())


async def get_user(session: AsyncSession, actor: Actor, user_id: int) -> User:
    """A user of the actor's dealer visible per the rules above, else :class:`NotFound`."""
    user = await session.get(User, user_id)
    if user is None or user.dealer_id != actor.dealer_id or (
            user.id != actor.user_id and not actor.can_anywhere(Action.MANAGE_ACCESS)):
        raise NotFound.of("user", user_id)
    return user


async def create_user(session: AsyncSession, actor: Actor, values: Mapping[str, Any], *,
                      clock: Clock = utc_now) -> User:
    """Create a user (dealer-wide Administrator): ``email``, ``password`` required; ``name``
    defaults to the e-mail; ``active`` to true. A taken e-mail (any case) → :class:`Conflict`
    ``email_taken``. The user has no roles until some are assigned."""
    check_known(values, _CREATE_FIELDS)
    _require_dealer_admin(actor, "create users")
    email = clean_email("email", values.get("email"))
    password = clean_password("password", values.get("password"))
    name = clean_text("name", values.get("name") or email)
    active = clean_bool("active", values.get("active", True))
    user = await _insert_user(session, actor.dealer_id, email, password, name, active, clock())
    await audit.record(session, "user.create", actor=actor, target_id=user.id,
                       after=audit.snapshot(user), clock=clock)
    return user


async def update_user(session: AsyncSession, actor: Actor, user_id: int,
                      changes: Mapping[str, Any], *, clock: Clock = utc_now) -> User:
    """Change a user: a dealer-wide Administrator may change ``email``, ``name``,
    ``password`` and ``active``; a user may change their own ``name`` and ``password``
    (with ``current_password``)."""
    user = await get_user(session, actor, user_id)
    before = audit.snapshot(user)
    is_admin = actor.can_dealer_wide(Action.MANAGE_ACCESS)
    if is_admin:
        check_known(changes, _ADMIN_UPDATE | ({"current_password"} if user.id == actor.user_id
                                              else set()))
    elif user.id == actor.user_id:
        check_known(changes, _SELF_UPDATE)
        if "password" in changes and not verify_password(
                user.password_hash, str(changes.get("current_password") or "")):
            raise InvalidInput("current_password is wrong", code="invalid_credentials",
                               field="current_password")
    else:
        raise PermissionDenied("only a dealer-wide administrator can change other users")
    if "email" in changes:
        email = clean_email("email", changes["email"])
        if email != user.email:
            await _ensure_email_free(session, email)
            user.email = email
    if "name" in changes:
        user.name = clean_text("name", changes["name"])
    if "password" in changes:
        user.password_hash = hash_password(clean_password("password", changes["password"]))
    if "active" in changes:
        active = clean_bool("active", changes["active"])
        if not active and user.active:
            await _ensure_not_last_admin(session, user.dealer_id, user_id=user.id)
            await end_user_sessions(session, user.id, f"the user {user.email} was deactivated",
                                    clock())
        user.active = active
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("that e-mail address is already in use", code="email_taken",
                       field="email") from None
    await audit.record(session, "user.update", actor=actor, target_id=user.id, before=before,
                       after=audit.snapshot(user), clock=clock)
    return user


async def delete_user(session: AsyncSession, actor: Actor, user_id: int, *,
                      clock: Clock = utc_now) -> None:
    """Delete a user with their roles, tokens and sessions (dealer-wide Administrator).
    Deleting oneself or the last dealer-wide Administrator is refused (:class:`Conflict`)."""
    user = await get_user(session, actor, user_id)
    _require_dealer_admin(actor, "delete users")
    if user.id == actor.user_id:
        raise Conflict("you cannot delete your own account", code="cannot_delete_self")
    await _ensure_not_last_admin(session, user.dealer_id, user_id=user.id)
    await audit.record(session, "user.delete", actor=actor, target_id=user.id,
                       before=audit.snapshot(user), clock=clock)
    await end_user_sessions(session, user.id, f"the user {user.email} was deleted", clock())
    await session.delete(user)
    await session.flush()


async def list_role_assignments(session: AsyncSession, actor: Actor, *,
                                user_id: int | None = None) -> list[RoleAssignment]:
    """Assignments the actor may manage (inside their Administrator scope) plus their own."""
    tree = await load_tree(session, actor.dealer_id)
    manage = scope_for(actor, Action.MANAGE_ACCESS, tree)
    query = select(RoleAssignment).where(RoleAssignment.dealer_id == actor.dealer_id)
    if user_id is not None:
        query = query.where(RoleAssignment.user_id == user_id)
    rows = (await session.scalars(query.order_by(RoleAssignment.id))).all()
    return [r for r in rows if r.user_id == actor.user_id or manage.covers(r.customer_id)]


async def create_role_assignment(session: AsyncSession, actor: Actor,
                                 values: Mapping[str, Any], *,
                                 clock: Clock = utc_now) -> RoleAssignment:
    """Grant ``role`` to ``user_id`` over ``customer_id`` (None: the whole dealer).

    The actor must be an Administrator over that scope: a customer outside what they can see
    → :class:`NotFound` (field ``customer_id``); inside but not administered, or a dealer-wide
    grant by a customer Administrator → :class:`PermissionDenied`. A duplicate →
    :class:`Conflict` ``role_assignment_exists``.
    """
    check_known(values, _ASSIGN_FIELDS)
    user_id = clean_int("user_id", values.get("user_id"), low=1, high=2**31 - 1)
    role = clean_choice("role", values.get("role"), ROLES)
    customer_id = values.get("customer_id")
    customer_id = None if customer_id in (None, "") else clean_int(
        "customer_id", customer_id, low=1, high=2**31 - 1)
    await _require_manage_scope(session, actor, customer_id)
    user = await session.get(User, user_id)
    if user is None or user.dealer_id != actor.dealer_id:
        raise NotFound(f"user {user_id} does not exist or is not visible to you",
                       field="user_id")
    existing = await session.scalar(select(RoleAssignment).where(
        RoleAssignment.user_id == user_id, RoleAssignment.role == role,
        RoleAssignment.customer_id.is_(None) if customer_id is None
        else RoleAssignment.customer_id == customer_id))
    if existing is not None:
        raise Conflict(f"{user.email} already has the {role} role on that scope",
                       code="role_assignment_exists")
    assignment = RoleAssignment(user_id=user_id, role=role, dealer_id=actor.dealer_id,
                                customer_id=customer_id, created_at=clock())
    session.add(assignment)
    await session.flush()
    await audit.record(session, "role_assignment.create", actor=actor, target_id=assignment.id,
                       customer_id=customer_id, after=audit.snapshot(assignment),
                       detail=f"{role} for {user.email}", clock=clock)
    return assignment


async def delete_role_assignment(session: AsyncSession, actor: Actor,
                                 assignment_id: int, *, clock: Clock = utc_now) -> None:
    """Revoke an assignment inside the actor's Administrator scope (else :class:`NotFound`).
    Revoking the dealer's last dealer-wide Administrator is refused (``last_administrator``)."""
    assignment = await session.get(RoleAssignment, assignment_id)
    tree = await load_tree(session, actor.dealer_id)
    if assignment is None or assignment.dealer_id != actor.dealer_id:
        raise NotFound.of("role assignment", assignment_id)
    if not scope_for(actor, Action.MANAGE_ACCESS, tree).covers(assignment.customer_id):
        if assignment.user_id == actor.user_id or scope_for(
                actor, Action.VIEW, tree).covers(assignment.customer_id):
            raise PermissionDenied("only an administrator of that scope can revoke this role")
        raise NotFound.of("role assignment", assignment_id)
    if assignment.role == "administrator" and assignment.customer_id is None:
        count = await _dealer_admin_count(session, actor.dealer_id)
        if count <= 1:
            raise Conflict("this is the dealer's last dealer-wide administrator; grant the role "
                           "to someone else first", code="last_administrator")
    await audit.record(session, "role_assignment.delete", actor=actor, target_id=assignment.id,
                       customer_id=assignment.customer_id, before=audit.snapshot(assignment),
                       detail=f"{assignment.role} of user {assignment.user_id}", clock=clock)
    if assignment.role != "viewer":
        # the user may no longer be allowed the sessions they have open: end them all
        await end_user_sessions(session, assignment.user_id,
                                f"the user's {assignment.role} role was revoked", clock())
    await session.delete(assignment)
    await session.flush()


async def list_api_tokens(session: AsyncSession, actor: Actor) -> list[ApiToken]:
    """The actor's own API tokens (hashes only; the plaintext is never kept)."""
    return list((await session.scalars(select(ApiToken).where(
        ApiToken.user_id == actor.user_id).order_by(ApiToken.id))).all())


async def create_api_token(session: AsyncSession, actor: Actor, name: Any, *,
                           clock: Clock = utc_now) -> IssuedApiToken:
    """A new personal API token for the actor; the plaintext is in the result, once."""
    issued = await issue_api_token(session, actor.user_id, clean_text("name", name), clock=clock)
    await audit.record(session, "api_token.create", actor=actor, target_id=issued.record.id,
                       after=audit.snapshot(issued.record), clock=clock)
    return issued


async def delete_api_token(session: AsyncSession, actor: Actor, token_id: int) -> None:
    """Revoke one of the actor's own tokens (another user's → :class:`NotFound`)."""
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != actor.user_id:
        raise NotFound.of("API token", token_id)
    await audit.record(session, "api_token.delete", actor=actor, target_id=token.id,
                       before=audit.snapshot(token))
    await session.delete(token)
    await session.flush()


async def create_dealer(session: AsyncSession, name: str, *, clock: Clock = utc_now) -> Dealer:
    """Create a dealer (trusted callers only: the CLI and the demo)."""
    dealer = Dealer(name=clean_text("name", name), created_at=clock())
    session.add(dealer)
    await session.flush()
    return dealer


async def provision_user(session: AsyncSession, *, email: str, password: str | None,
                         role: str, customer_id: int | None = None, name: str | None = None,
                         dealer_id: int | None = None, clock: Clock = utc_now) -> User:
    """Create a user, or add a role to an existing one (trusted: CLI and demo, no actor).

    The dealer is the scope customer's dealer, else ``dealer_id``, else the only dealer
    (created as "Dealer" when there is none). An existing user's password is left unchanged
    unless ``password`` is given.
    """
    email = clean_email("email", email)
    role = clean_choice("role", role, ROLES)
    if customer_id is not None:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist", field="scope")
        dealer_id = customer.dealer_id
    if dealer_id is None:
        dealers = (await session.scalars(select(Dealer.id).limit(2))).all()
        if len(dealers) > 1:
            raise InvalidInput("there are several dealers; give a customer scope",
                               field="scope")
        dealer_id = dealers[0] if dealers else (await create_dealer(session, "Dealer",
                                                                    clock=clock)).id
    user = await session.scalar(select(User).where(User.email == email))
    now = clock()
    if user is None:
        user = await _insert_user(session, dealer_id, email,
                                  clean_password("password", password),
                                  clean_text("name", name or email), True, now)
    else:
        if user.dealer_id != dealer_id:
            raise Conflict(f"{email} belongs to another dealer", code="email_taken",
                           field="email")
        if password is not None:
            user.password_hash = hash_password(clean_password("password", password))
        if name:
            user.name = clean_text("name", name)
    exists = await session.scalar(select(RoleAssignment.id).where(
        RoleAssignment.user_id == user.id, RoleAssignment.role == role,
        RoleAssignment.customer_id.is_(None) if customer_id is None
        else RoleAssignment.customer_id == customer_id))
    if exists is None:
        session.add(RoleAssignment(user_id=user.id, role=role, dealer_id=dealer_id,
                                   customer_id=customer_id, created_at=now))
    await session.flush()
    await audit.record(session, "user.provision", actor=audit.SYSTEM, target_id=user.id,
                       dealer_id=dealer_id, customer_id=customer_id,
                       after={**audit.snapshot(user, "email", "name", "active"), "role": role,
                              "customer_id": customer_id},
                       detail="role already held" if exists is not None else None, clock=clock)
    return user


async def _insert_user(session: AsyncSession, dealer_id: int, email: str, password: str,
                       name: str, active: bool, now: Any) -> User:
    await _ensure_email_free(session, email)
    user = User(dealer_id=dealer_id, email=email, name=name,
                password_hash=hash_password(password), active=active, created_at=now)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a user with e-mail {email} already exists", code="email_taken",
                       field="email") from None
    return user


async def _ensure_email_free(session: AsyncSession, email: str) -> None:
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with e-mail {email} already exists", code="email_taken",
                       field="email")


def _require_dealer_admin(actor: Actor, what: str) -> None:
    if not actor.can_dealer_wide(Action.MANAGE_ACCESS):
        raise PermissionDenied(f"only a dealer-wide administrator can {what}")


async def _require_manage_scope(session: AsyncSession, actor: Actor,
                                customer_id: int | None) -> None:
    tree = await load_tree(session, actor.dealer_id)
    if customer_id is None:
        if not actor.can_dealer_wide(Action.MANAGE_ACCESS):
            raise PermissionDenied("only a dealer-wide administrator can grant dealer-wide "
                                   "roles; choose a customer in your scope", field="customer_id")
        return
    if customer_id not in tree.parents or not scope_for(actor, Action.VIEW, tree).covers(
            customer_id):
        raise NotFound(f"customer {customer_id} does not exist or is not visible to you",
                       field="customer_id")
    if not scope_for(actor, Action.MANAGE_ACCESS, tree).covers(customer_id):
        raise PermissionDenied(f"you are not an administrator of customer {customer_id}",
                               field="customer_id")


async def _dealer_admin_count(session: AsyncSession, dealer_id: int,
                              excluding_user: int | None = None) -> int:
    query = select(func.count(func.distinct(RoleAssignment.user_id))).select_from(
        RoleAssignment).join(User, User.id == RoleAssignment.user_id).where(
        RoleAssignment.dealer_id == dealer_id, RoleAssignment.role == "administrator",
        RoleAssignment.customer_id.is_(None), User.active.is_(True))
    if excluding_user is not None:
        query = query.where(RoleAssignment.user_id != excluding_user)
    return int(await session.scalar(query) or 0)


async def _ensure_not_last_admin(session: AsyncSession, dealer_id: int, *, user_id: int) -> None:
    is_admin = await session.scalar(select(RoleAssignment.id).where(
        RoleAssignment.user_id == user_id, RoleAssignment.role == "administrator",
        RoleAssignment.customer_id.is_(None)))
    if is_admin is not None and await _dealer_admin_count(
            session, dealer_id, excluding_user=user_id) == 0:
        raise Conflict("this user is the dealer's last dealer-wide administrator; grant the "
                       "role to someone else first", code="last_administrator")
