"""Users & roles administration and the personal API tokens page.

Users & roles (Administrators; the section is in the navigation only for them and the
service layer refuses everyone else): the dealer's users with their roles; *Add a user*
creates the user and their first role in **one** transaction, so a refused role leaves no
role-less user behind; a user's page lists their roles (scope: the whole dealer or a customer
and everything below it), gives and removes roles.

An Administrator also edits a user's account (name, e-mail, a new password, *active*) and
deletes users; the service layer allows that to dealer-wide Administrators only and refuses
to deactivate or delete the last one.

Your account (everyone, for themselves): change the name and the password (the current
password is required), and personal API tokens: list, create — the token is shown once, in
the response to the POST that created it, with ``Cache-Control: no-store`` — and revoke.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.responses import Response

from ewsgate.portal.services import users as user_service
from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.store.models import RoleAssignment, User
from ewsgate.portal.ui.lookups import Directory, load_directory
from ewsgate.portal.ui.web import ROLE_LABELS, Page, PageError, page

__all__ = ["add_role", "api_tokens", "create_api_token", "create_user", "delete_user",
           "remove_role", "revoke_api_token", "update_profile", "update_user", "user_detail",
           "user_list"]

ROLE_CHOICES: list[tuple[str, str, str]] = [
    ("viewer", ROLE_LABELS["viewer"],
     "Sees devices, installations, customers and jobs in scope; changes nothing."),
    ("approver", ROLE_LABELS["approver"],
     "A customer's own user: sees its devices, sessions and policy; approves or denies "
     "session requests in scope."),
    ("user", ROLE_LABELS["user"],
     "Opens device web pages (Remote Technician sessions) on enabled devices in scope."),
    ("configurer", ROLE_LABELS["configurer"],
     "Turns Remote Technician on or off for the devices in scope."),
    ("administrator", ROLE_LABELS["administrator"],
     "Manages users, roles, customers, installations and devices in scope."),
]

_USER_FIELDS = frozenset({"email", "name", "password", "role", "customer_id"})
_ROLE_FIELDS = frozenset({"role", "customer_id"})
_ACCOUNT_FIELDS = frozenset({"name", "email", "password", "active"})
_PROFILE_FIELDS = frozenset({"name", "current_password", "password"})


@dataclass(frozen=True)
class RoleView:
    id: int
    role_label: str
    scope_label: str
    created_at: datetime


@dataclass(frozen=True)
class UserRow:
    user: User
    roles: list[RoleView]


def _role_view(assignment: RoleAssignment, directory: Directory) -> RoleView:
    scope = ("whole dealer" if assignment.customer_id is None
             else directory.customer_label(assignment.customer_id))
    return RoleView(assignment.id, ROLE_LABELS.get(assignment.role, assignment.role), scope,
                    assignment.created_at)


def _form(p: Page, names: frozenset[str]) -> dict[str, str]:
    return {name: p.field(name) for name in names}


def _not_admin(p: Page) -> Response | None:
    if p.actor.can_anywhere(Action.MANAGE_ACCESS):
        return None
    return p.ui.message(p.request, title="Not allowed",
                        message="Only administrators manage users and roles. Ask one if you "
                        "need a role changed.", status_code=403, actor=p.actor,
                        csrf_token=p.session_info.csrf_token)


async def _users_page(p: Page, *, form: dict[str, str] | None = None,
                      error: PageError | None = None, status_code: int = 200) -> Response:
    async with p.transaction() as session:
        directory = await load_directory(session, p.actor)
        users = await user_service.list_users(session, p.actor)
        assignments = await user_service.list_role_assignments(session, p.actor)
    by_user: dict[int, list[RoleView]] = {}
    for assignment in assignments:
        by_user.setdefault(assignment.user_id, []).append(_role_view(assignment, directory))
    rows = [UserRow(u, by_user.get(u.id, [])) for u in users]
    return p.render("users/list.html", "users", {
        "title": "Users & roles", "rows": rows, "role_choices": ROLE_CHOICES,
        "customer_options": directory.customer_options(),
        "form": form or {"email": "", "name": "", "role": "viewer", "customer_id": ""},
        "error": error,
    }, status_code=status_code)


@page
async def user_list(p: Page) -> Response:
    """``GET /users``."""
    return _not_admin(p) or await _users_page(p)


@page
async def create_user(p: Page) -> Response:
    """``POST /users``: a new user and their first role, together or not at all."""
    if (refusal := _not_admin(p)) is not None:
        return refusal
    form = _form(p, _USER_FIELDS)
    try:
        async with p.transaction() as session:
            user = await user_service.create_user(session, p.actor, {
                "email": form["email"], "password": form["password"],
                **({"name": form["name"]} if form["name"] else {})}, clock=p.ui.config.clock)
            await user_service.create_role_assignment(session, p.actor, {
                "user_id": user.id, "role": form["role"], "customer_id": form["customer_id"]},
                clock=p.ui.config.clock)
            user_id = user.id
    except ServiceError as exc:
        return await _users_page(p, form={**form, "password": ""}, status_code=exc.status,
                                 error=PageError.of(exc, _USER_FIELDS))
    return p.redirect(f"/users/{user_id}", "user-created")


async def _user_page(p: Page, user_id: int, *, form: dict[str, str] | None = None,
                     account: dict[str, Any] | None = None, error: PageError | None = None,
                     status_code: int = 200) -> Response:
    try:
        async with p.transaction() as session:
            subject = await user_service.get_user(session, p.actor, user_id)
            directory = await load_directory(session, p.actor)
            assignments = await user_service.list_role_assignments(session, p.actor,
                                                                   user_id=user_id)
    except ServiceError as exc:
        return p.failure(exc)
    return p.render("users/detail.html", "users", {
        "title": subject.name, "subject": subject,
        "roles": [_role_view(a, directory) for a in assignments],
        "role_choices": ROLE_CHOICES, "customer_options": directory.customer_options(),
        "form": form or {"role": "viewer", "customer_id": ""}, "error": error,
        "can_edit_account": p.actor.can_dealer_wide(Action.MANAGE_ACCESS),
        "account": account or {"name": subject.name, "email": subject.email,
                               "active": subject.active},
        "me_id": p.actor.user_id,
    }, status_code=status_code)


@page
async def user_detail(p: Page, user_id: int) -> Response:
    """``GET /users/{id}``: the user's roles, with forms to give and remove roles."""
    return _not_admin(p) or await _user_page(p, user_id)


@page
async def add_role(p: Page, user_id: int) -> Response:
    """``POST /users/{id}/roles`` (``role``, ``customer_id``; empty = the whole dealer)."""
    if (refusal := _not_admin(p)) is not None:
        return refusal
    form = _form(p, _ROLE_FIELDS)
    try:
        async with p.transaction() as session:
            await user_service.create_role_assignment(
                session, p.actor, {"user_id": user_id, **form}, clock=p.ui.config.clock)
    except ServiceError as exc:
        return await _user_page(p, user_id, form=form, status_code=exc.status,
                                error=PageError.of(exc, _ROLE_FIELDS))
    return p.redirect(f"/users/{user_id}", "role-added")


@page
async def remove_role(p: Page, user_id: int, assignment_id: int) -> Response:
    """``POST /users/{id}/roles/{assignment}/delete``."""
    if (refusal := _not_admin(p)) is not None:
        return refusal
    try:
        async with p.transaction() as session:
            await user_service.delete_role_assignment(session, p.actor, assignment_id)
    except ServiceError as exc:
        return await _user_page(p, user_id, status_code=exc.status, error=PageError.of(exc))
    return p.redirect(f"/users/{user_id}", "role-removed")


async def _tokens_page(p: Page, *, new_token: Any = None, form: dict[str, str] | None = None,
                       profile: dict[str, str] | None = None, error: PageError | None = None,
                       status_code: int = 200) -> Response:
    async with p.transaction() as session:
        tokens = await user_service.list_api_tokens(session, p.actor)
        me = await user_service.get_user(session, p.actor, p.actor.user_id)
    return p.render("account/tokens.html", "account", {
        "title": "Your account", "tokens": tokens, "new_token": new_token,
        "form": form or {"name": ""}, "profile": profile or {"name": me.name},
        "error": error,
    }, status_code=status_code)


@dataclass(frozen=True)
class NewToken:
    name: str
    token: str


@page
async def api_tokens(p: Page) -> Response:
    """``GET /account/tokens``: the signed-in person's API tokens."""
    return await _tokens_page(p)


@page
async def create_api_token(p: Page) -> Response:
    """``POST /account/tokens`` (``name``): the new token is in this response only."""
    name = p.field("token_name")
    try:
        async with p.transaction() as session:
            issued = await user_service.create_api_token(session, p.actor, name,
                                                         clock=p.ui.config.clock)
            shown = NewToken(issued.record.name, issued.token)
    except ServiceError as exc:
        error = PageError.of(exc)
        if error.field == "name":  # the token form's field is "token_name" on this page
            error = PageError(error.message, error.code, "token_name", inline=True)
        return await _tokens_page(p, form={"name": name}, status_code=exc.status, error=error)
    return await _tokens_page(p, new_token=shown, status_code=201)


@page
async def revoke_api_token(p: Page, token_id: int) -> Response:
    """``POST /account/tokens/{id}/revoke``."""
    try:
        async with p.transaction() as session:
            await user_service.delete_api_token(session, p.actor, token_id)
    except ServiceError as exc:
        return await _tokens_page(p, status_code=exc.status, error=PageError.of(exc))
    return p.redirect("/account/tokens", "token-revoked")


@page
async def update_user(p: Page, user_id: int) -> Response:
    """``POST /users/{id}``: name, e-mail, *active*, and a new password when one is given."""
    if (refusal := _not_admin(p)) is not None:
        return refusal
    changes: dict[str, Any] = {"name": p.field("name"), "email": p.field("email"),
                               "active": p.field("active") == "true"}
    if p.field("password"):
        changes["password"] = p.field("password")
    try:
        async with p.transaction() as session:
            await user_service.update_user(session, p.actor, user_id, changes)
    except ServiceError as exc:
        account = {k: v for k, v in changes.items() if k != "password"}
        return await _user_page(p, user_id, account=account, status_code=exc.status,
                                error=PageError.of(exc, _ACCOUNT_FIELDS))
    return p.redirect(f"/users/{user_id}", "user-saved")


@page
async def delete_user(p: Page, user_id: int) -> Response:
    """``POST /users/{id}/delete``."""
    if (refusal := _not_admin(p)) is not None:
        return refusal
    try:
        async with p.transaction() as session:
            await user_service.delete_user(session, p.actor, user_id)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _user_page(p, user_id, status_code=exc.status, error=PageError.of(exc))
    return p.redirect("/users", "user-deleted")


@page
async def update_profile(p: Page) -> Response:
    """``POST /account/profile``: your own name and, with the current password, a new one."""
    changes: dict[str, Any] = {"name": p.field("name")}
    if p.field("password") or p.field("current_password"):
        changes["password"] = p.field("password")
        changes["current_password"] = p.field("current_password")
    try:
        async with p.transaction() as session:
            await user_service.update_user(session, p.actor, p.actor.user_id, changes)
    except ServiceError as exc:
        return await _tokens_page(p, profile={"name": changes["name"]}, status_code=exc.status,
                                  error=PageError.of(exc, _PROFILE_FIELDS))
    return p.redirect("/account/tokens", "profile-saved")
