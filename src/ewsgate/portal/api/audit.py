"""REST: the audit trail, ``GET /api/v1/audit-events`` (JSON pages, or streamed CSV / JSON
lines), for readers with the ``view_audit`` permission (Administrators, within their scope).

Pages are newest first; ``next_cursor`` (when present) is passed back as ``cursor`` for the
next, older page. ``format=csv`` / ``format=jsonl`` stream every matching entry from
``cursor`` on (``limit`` applies to JSON pages only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ewsgate.portal.api.deps import Context, CurrentActor
from ewsgate.portal.services import audit
from ewsgate.portal.services.audit_export import as_dict, csv_lines, json_lines
from ewsgate.portal.services.errors import InvalidInput

__all__ = ["AuditEventOut", "AuditPage", "router"]

router = APIRouter()


class AuditEventOut(BaseModel):
    """One audit entry: who (actor), when (at), from where (client_ip, user_agent), what
    (action on target) and the changed fields before → after (secrets redacted)."""

    id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor: str | None
    client_ip: str | None
    user_agent: str | None
    action: str
    target_type: str
    target_id: str | None
    dealer_id: int | None
    customer_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    #: pass as ``cursor`` for the next (older) page; null on the last page
    next_cursor: str | None


def parse_cursor(cursor: str | None) -> int | None:
    """The id a cursor stands for; anything else is refused (422, field ``cursor``)."""
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 12:
        raise InvalidInput("cursor must be the next_cursor of a previous page", field="cursor")
    return int(cursor)


@router.get("/audit-events", tags=["audit"], response_model=None, responses={
    200: {"model": AuditPage, "description": "JSON (default); CSV or JSON lines with format"}})
async def list_audit_events(
        actor: CurrentActor, ctx: Context,
        actor_filter: Annotated[str | None, Query(alias="actor", max_length=320)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        target_type: Annotated[str | None, Query(max_length=32)] = None,
        target_id: Annotated[str | None, Query(max_length=64)] = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=12)] = None,
        format: Literal["json", "csv", "jsonl"] = "json") -> AuditPage | Response:
    """The audit trail in your scope, newest first, filtered by who acted (e-mail or id),
    action, target and time (``since`` inclusive, ``until`` exclusive, ISO 8601 with zone)."""
    filters = audit.AuditFilter(actor=actor_filter or None, action=action or None,
                                target_type=target_type or None, target_id=target_id or None,
                                since=since, until=until)
    after = parse_cursor(cursor)
    async with ctx.database.transaction() as s:
        scope = (await audit.audit_scope(s, actor)).require()
        if format == "json":
            rows = await audit.list_events(s, scope, filters, limit=limit, cursor=after)
            return AuditPage(events=[AuditEventOut.model_validate(as_dict(r)) for r in rows],
                             next_cursor=str(rows[-1].id) if len(rows) == limit else None)
    events = audit.iter_events(ctx.database, scope, filters, cursor=after)
    headers = {"Cache-Control": "no-store",
               "Content-Disposition": f'attachment; filename="audit-events.{format}"'}
    if format == "csv":
        return StreamingResponse(csv_lines(events), media_type="text/csv; charset=utf-8",
                                 headers=headers)
    return StreamingResponse(json_lines(events), media_type="application/x-ndjson",
                             headers=headers)
