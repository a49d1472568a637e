"""The Installations and Customers pages.

Installations: each visible installation with its customer, online state, last contact and
device count. An Administrator adds one (name, customer) and receives its one-time enrolment
token in the same response — created in the same transaction as the installation, shown once,
never stored in clear, never put in a URL — or issues a new token for an existing one.

Customers: the visible customers as a tree (sub-customers under their parent; a customer whose
parent the viewer cannot see is a root), with installation and device counts. An
Administrator adds customers, at the top level or under one in their scope, renames and moves
them (a move below itself or one of its descendants is refused by the service layer as a
cycle, shown on the *Part of* field) and deletes empty ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from ewsgate.portal.services import customers as customer_service
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services import installations as installation_service
from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.store.models import Installation
from ewsgate.portal.ui.lookups import load_directory
from ewsgate.portal.ui.rendering import ago
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["create_customer", "create_enrolment_token", "create_installation", "customer_detail",
           "customer_list", "delete_customer", "installation_list", "set_site_subnets",
           "update_customer"]

_INSTALLATION_FIELDS = frozenset({"name", "customer_id", "site_subnets"})
_CUSTOMER_FIELDS = frozenset({"name", "parent_id"})


@dataclass(frozen=True)
class InstallationRow:
    installation: Installation
    customer_name: str
    device_count: int


@dataclass(frozen=True)
class Enrolment:
    """A freshly issued enrolment token, for the one response that shows it."""

    installation_name: str
    token: str
    portal: str
    expires_label: str
    #: ``enrol`` or ``replace`` (the agent that uses it replaces the current certificate)
    purpose: str = "enrol"


def _form(p: Page, names: frozenset[str]) -> dict[str, str]:
    return {name: p.field(name) for name in names}


async def _installations_page(p: Page, *, form: dict[str, str] | None = None,
                              error: PageError | None = None, enrolment: Enrolment | None = None,
                              status_code: int = 200) -> Response:
    async with p.transaction() as session:
        directory = await load_directory(session, p.actor)
        devices = await device_service.list_devices(session, p.actor, limit=5000)
    counts: dict[int, int] = {}
    for device in devices:
        counts[device.installation_id] = counts.get(device.installation_id, 0) + 1
    rows = sorted((InstallationRow(i, directory.customer_label(i.customer_id),
                                   counts.get(i.id, 0))
                   for i in directory.installations.values()),
                  key=lambda r: (r.installation.name.lower(), r.installation.id))
    if enrolment is not None:
        p.extra_headers["Cache-Control"] = "no-store"
    return p.render("installations/list.html", "installations", {
        "title": "Installations", "rows": rows,
        "can_admin": p.actor.can_anywhere(Action.MANAGE_INVENTORY),
        "customer_options": directory.customer_options(),
        "form": form or dict.fromkeys(_INSTALLATION_FIELDS, ""),
        "error": error, "enrolment": enrolment,
    }, status_code=status_code)


@page
async def installation_list(p: Page) -> Response:
    """``GET /installations``."""
    return await _installations_page(p)


def _enrolment(p: Page, name: str, issued: Any) -> Enrolment:
    lifetime = issued.record.expires_at - issued.record.created_at
    portal = p.ui.config.enrol_address or "PORTAL_HOST:GRPC_PORT"
    return Enrolment(name, p.ui.config.display_token(issued.token), portal,
                     ago(p.ui.config.clock() + lifetime, p.ui.config.clock())
                     if lifetime > timedelta(0) else "now", issued.record.purpose)


@page
async def create_installation(p: Page) -> Response:
    """``POST /installations`` (``name``, ``customer_id``): Administrators; shows the token."""
    form = _form(p, _INSTALLATION_FIELDS)
    try:
        async with p.transaction() as session:
            installation = await installation_service.create_installation(
                session, p.actor, form, clock=p.ui.config.clock)
            issued = await installation_service.create_enrolment_token(
                session, p.actor, installation.id, clock=p.ui.config.clock)
            name = installation.name
    except ServiceError as exc:
        return await _installations_page(p, form=form, status_code=exc.status,
                                         error=PageError.of(exc, _INSTALLATION_FIELDS))
    return await _installations_page(p, enrolment=_enrolment(p, name, issued),
                                     status_code=201)


@page
async def create_enrolment_token(p: Page, installation_id: int) -> Response:
    """``POST /installations/{id}/enrolment-token``: a new one-time token (Administrators)."""
    try:
        async with p.transaction() as session:
            installation = await installation_service.get_installation(
                session, p.actor, installation_id)
            issued = await installation_service.create_enrolment_token(
                session, p.actor, installation_id, purpose=p.field("purpose") or None,
                clock=p.ui.config.clock)
            name = installation.name
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _installations_page(p, status_code=exc.status, error=PageError.of(exc))
    return await _installations_page(p, enrolment=_enrolment(p, name, issued), status_code=201)


@page
async def set_site_subnets(p: Page, installation_id: int) -> Response:
    """``POST /installations/{id}/site-subnets`` (``site_subnets``: networks separated by
    commas, spaces or new lines; empty: no limit): Administrators of the installation."""
    try:
        async with p.transaction() as session:
            await installation_service.update_installation(
                session, p.actor, installation_id, {"site_subnets": p.field("site_subnets")},
                clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _installations_page(p, status_code=exc.status,
                                         error=PageError.of(exc, _INSTALLATION_FIELDS))
    return p.redirect("/installations", "site-subnets-saved")


async def _customers_page(p: Page, *, form: dict[str, str] | None = None,
                          error: PageError | None = None, status_code: int = 200) -> Response:
    async with p.transaction() as session:
        directory = await load_directory(session, p.actor)
        devices = await device_service.list_devices(session, p.actor, limit=5000)
    counts: dict[int, int] = {}
    for device in devices:
        counts[device.installation_id] = counts.get(device.installation_id, 0) + 1
    return p.render("customers/list.html", "customers", {
        "title": "Customers", "tree": directory.tree(counts),
        "can_admin": p.actor.can_anywhere(Action.MANAGE_INVENTORY),
        "customer_options": directory.customer_options(),
        "form": form or dict.fromkeys(_CUSTOMER_FIELDS, ""), "error": error,
    }, status_code=status_code)


@page
async def customer_list(p: Page) -> Response:
    """``GET /customers``: the visible customer tree."""
    return await _customers_page(p)


@page
async def create_customer(p: Page) -> Response:
    """``POST /customers`` (``name``, ``parent_id``): Administrators."""
    form = _form(p, _CUSTOMER_FIELDS)
    try:
        async with p.transaction() as session:
            await customer_service.create_customer(session, p.actor, form,
                                                   clock=p.ui.config.clock)
    except ServiceError as exc:
        return await _customers_page(p, form=form, status_code=exc.status,
                                     error=PageError.of(exc, _CUSTOMER_FIELDS))
    return p.redirect("/customers", "customer-created")


async def _customer_page(p: Page, customer_id: int, *, form: dict[str, str] | None = None,
                         error: PageError | None = None, status_code: int = 200) -> Response:
    try:
        async with p.transaction() as session:
            customer = await customer_service.get_customer(session, p.actor, customer_id)
            path = await customer_service.customer_path(session, p.actor, customer_id)
            directory = await load_directory(session, p.actor)
    except ServiceError as exc:
        return p.failure(exc)
    installations = [i for i in directory.installations.values()
                     if i.customer_id == customer.id]
    return p.render("customers/detail.html", "customers", {
        "title": customer.name, "customer": customer, "path": path,
        "installation_count": len(installations),
        "can_admin": p.actor.can_anywhere(Action.MANAGE_INVENTORY),
        "customer_options": [o for o in directory.customer_options() if o.id != customer.id],
        "form": form or {"name": customer.name,
                         "parent_id": str(customer.parent_id or "")},
        "error": error,
    }, status_code=status_code)


@page
async def customer_detail(p: Page, customer_id: int) -> Response:
    """``GET /customers/{id}``: rename, move, delete."""
    return await _customer_page(p, customer_id)


@page
async def update_customer(p: Page, customer_id: int) -> Response:
    """``POST /customers/{id}`` (``name``, ``parent_id``; empty = top level)."""
    form = _form(p, _CUSTOMER_FIELDS)
    try:
        async with p.transaction() as session:
            await customer_service.update_customer(session, p.actor, customer_id, form)
    except ServiceError as exc:
        return await _customer_page(p, customer_id, form=form, status_code=exc.status,
                                    error=PageError.of(exc, _CUSTOMER_FIELDS))
    return p.redirect(f"/customers/{customer_id}", "customer-saved")


@page
async def delete_customer(p: Page, customer_id: int) -> Response:
    """``POST /customers/{id}/delete``: only an empty customer."""
    try:
        async with p.transaction() as session:
            await customer_service.delete_customer(session, p.actor, customer_id)
    except ServiceError as exc:
        return await _customer_page(p, customer_id, status_code=exc.status,
                                    error=PageError.of(exc))
    return p.redirect("/customers", "customer-deleted")
