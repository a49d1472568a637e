"""The notification pages of the web UI.

* ``GET /notifications`` (Administrators): the outbox of the customers they administer,
  filterable by status, with the reason of each failure and *Retry* on failed ones.
* ``GET|POST /customers/{id}/contacts``: a customer's e-mail contacts and webhook (everyone
  with a role sees them, Administrators change them); a new webhook secret is shown once, in
  the response to the POST that made it, with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from ewsgate.portal.notifications import contacts as contact_service
from ewsgate.portal.notifications import outbox
from ewsgate.portal.notifications.contacts import ContactsView
from ewsgate.portal.services import customers as customer_service
from ewsgate.portal.services.access import Action
from ewsgate.portal.services.errors import ServiceError
from ewsgate.portal.store.models import NOTIFICATION_STATUSES
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["mount_pages"]

_CONTACT_FIELDS = frozenset({"emails", "webhook_url"})


@page
async def notification_list(p: Page) -> Response:
    """``GET /notifications?status=``: the outbox, newest first."""
    if not p.actor.can_anywhere(Action.MANAGE_ACCESS):
        return p.ui.message(p.request, title="Not allowed",
                            message="Only administrators see the notifications.",
                            status_code=403, actor=p.actor,
                            csrf_token=p.session_info.csrf_token)
    status = p.request.query_params.get("status") or None
    if status not in (None, *NOTIFICATION_STATUSES):
        status = None
    async with p.transaction() as session:
        rows = await outbox.list_notifications(session, p.actor, status=status, limit=200)
        counts = await outbox.status_counts(session, p.actor)
    return p.render("notifications/list.html", "notifications", {
        "title": "Notifications", "rows": rows, "status": status, "counts": counts,
        "statuses": NOTIFICATION_STATUSES})


@page
async def retry_notification(p: Page, notification_id: int) -> Response:
    """``POST /notifications/{id}/retry``."""
    try:
        async with p.transaction() as session:
            await outbox.retry(session, p.actor, notification_id, now=p.ui.config.clock())
    except ServiceError as exc:
        return p.failure(exc)
    return p.redirect("/notifications?status=failed")


async def _contacts_page(p: Page, customer_id: int, *, view: ContactsView | None = None,
                         form: dict[str, str] | None = None, status_code: int = 200,
                         error: PageError | None = None) -> Response:
    try:
        async with p.transaction() as session:
            customer = await customer_service.get_customer(session, p.actor, customer_id)
            current = await contact_service.get_contacts(session, p.actor, customer_id)
    except ServiceError as exc:
        return p.failure(exc)
    shown = view or current
    context: dict[str, Any] = {
        "title": f"{customer.name}: notification contacts", "customer": customer,
        "contacts": shown, "new_secret": view.webhook_secret if view else None,
        "form": form or {"emails": "\n".join(shown.emails),
                         "webhook_url": shown.webhook_url or ""},
        "can_edit": p.actor.can_anywhere(Action.MANAGE_ACCESS)}
    response = p.render("notifications/contacts.html", "customers", {**context, "error": error},
                        status_code=status_code)
    if view is not None and view.webhook_secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@page
async def contacts_form(p: Page, customer_id: int) -> Response:
    """``GET /customers/{id}/contacts``."""
    return await _contacts_page(p, customer_id)


@page
async def save_contacts(p: Page, customer_id: int) -> Response:
    """``POST /customers/{id}/contacts`` (``emails`` one per line, ``webhook_url``,
    ``rotate_secret``)."""
    form = {name: p.field(name) for name in _CONTACT_FIELDS}
    values: dict[str, Any] = {"emails": form["emails"], "webhook_url": form["webhook_url"]}
    if p.field("rotate_secret") == "1":
        values["rotate_secret"] = True
    try:
        async with p.transaction() as session:
            view = await contact_service.set_contacts(session, p.actor, customer_id, values,
                                                      clock=p.ui.config.clock)
    except ServiceError as exc:
        return await _contacts_page(p, customer_id, form=form, status_code=exc.status,
                                    error=PageError.of(exc, _CONTACT_FIELDS))
    if view.webhook_secret:
        return await _contacts_page(p, customer_id, view=view, status_code=200)
    return p.redirect(f"/customers/{customer_id}/contacts")


def mount_pages(app: FastAPI) -> None:
    """Add the pages to an app that has the web UI."""
    for path, endpoint, methods in (
            ("/notifications", notification_list, ["GET"]),
            ("/notifications/{notification_id:int}/retry", retry_notification, ["POST"]),
            ("/customers/{customer_id:int}/contacts", contacts_form, ["GET"]),
            ("/customers/{customer_id:int}/contacts", save_contacts, ["POST"])):
        app.add_route(path, endpoint, methods=methods, include_in_schema=False)
