"""REST API of notifications.

=======  ==========================================  ========================================
GET      /api/v1/notifications?status=&customer_id=  the outbox (Administrators, own scope),
                                                     newest first; ``status=failed``: the
                                                     deliveries that gave up
GET      /api/v1/notifications/summary           how many in each status (Administrators)
POST     /api/v1/notifications/{id}/retry            queue a failed one again (Administrator)
GET      /api/v1/customers/{id}/contacts             e-mail addresses and webhook (any role)
PUT      /api/v1/customers/{id}/contacts             change them (Administrator); a new
                                                     webhook secret is in the answer, once
=======  ==========================================  ========================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ewsgate.portal.api.deps import Context, CurrentActor, Id, QueryId
from ewsgate.portal.notifications import contacts, outbox
from ewsgate.portal.notifications.contacts import ContactsView
from ewsgate.portal.store.models import Notification

__all__ = ["ContactsIn", "router"]

router = APIRouter(prefix="/api/v1", tags=["notifications"])


class ContactsIn(BaseModel):
    """What to change; a field left out is kept."""

    model_config = ConfigDict(extra="forbid")
    emails: list[str] | None = None
    webhook_url: str | None = None
    rotate_secret: bool = False


def notification_json(row: Notification) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": row.id, "kind": row.kind, "channel": row.channel, "target": row.target,
            "customer_id": row.customer_id, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": iso(row.next_attempt_at) if row.status != "delivered" else None,
            "last_error": row.last_error, "created_at": iso(row.created_at),
            "delivered_at": iso(row.delivered_at), "data": row.payload}


def _contacts_json(view: ContactsView) -> JSONResponse:
    body: dict[str, Any] = {"customer_id": view.customer_id, "emails": view.emails,
                            "webhook_url": view.webhook_url,
                            "webhook_secret_set": view.webhook_secret_set}
    if view.webhook_secret is not None:
        body["webhook_secret"] = view.webhook_secret  # shown this once
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/notifications")
async def list_notifications(actor: CurrentActor, ctx: Context, status: str | None = None,
                             customer_id: QueryId = None,
                             limit: Annotated[int, Query(ge=1, le=500)] = 100,
                             ) -> list[dict[str, Any]]:
    """The notification outbox of the customers you administer."""
    async with ctx.database.transaction() as s:
        rows = await outbox.list_notifications(s, actor, status=status,
                                               customer_id=customer_id, limit=limit)
        return [notification_json(r) for r in rows]


@router.get("/notifications/summary")
async def notification_summary(actor: CurrentActor, ctx: Context) -> dict[str, int]:
    """How many notifications are pending, sending, delivered and failed (your scope)."""
    async with ctx.database.transaction() as s:
        return await outbox.status_counts(s, actor)


@router.post("/notifications/{notification_id}/retry")
async def retry_notification(notification_id: Id, actor: CurrentActor,
                             ctx: Context) -> dict[str, Any]:
    """Queue a failed notification again."""
    async with ctx.database.transaction() as s:
        row = await outbox.retry(s, actor, notification_id, now=ctx.clock())
        return notification_json(row)


@router.get("/customers/{customer_id}/contacts")
async def get_contacts(customer_id: Id, actor: CurrentActor, ctx: Context) -> JSONResponse:
    """Who hears of this customer's sessions."""
    async with ctx.database.transaction() as s:
        return _contacts_json(await contacts.get_contacts(s, actor, customer_id))


@router.put("/customers/{customer_id}/contacts")
async def put_contacts(customer_id: Id, body: ContactsIn, actor: CurrentActor,
                       ctx: Context) -> JSONResponse:
    """Set the e-mail addresses and the webhook; ``webhook_url: null`` removes it."""
    async with ctx.database.transaction() as s:
        view = await contacts.set_contacts(s, actor, customer_id,
                                           body.model_dump(exclude_unset=True),
                                           clock=ctx.clock)
    return _contacts_json(view)
