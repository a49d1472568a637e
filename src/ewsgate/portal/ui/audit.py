"""The Audit page: the audit trail of the reader's scope, newest first, with filters.

Filters are plain GET parameters (bookmarkable), the same as the API's
``GET /api/v1/audit-events``; the page's download links are that API call with
``format=csv`` / ``format=jsonl`` (the session cookie authenticates a GET, no CSRF needed).
Older entries are one "Older entries" link away (the API's cursor).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.responses import Response

from ewsgate.portal.services import audit
from ewsgate.portal.services.errors import InvalidInput, ServiceError
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["audit_list"]

_PAGE = 100
_TEXT_FILTERS = {"actor": 320, "action": 64, "target_type": 32, "target_id": 64}


def _moment(name: str, text: str) -> datetime | None:
    """``YYYY-MM-DD`` or an ISO 8601 time; without a zone it is UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (2026-12-04) or an ISO 8601 time "
                           f"(2026-12-04T10:00Z), not {text[:40]!r}", field=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(p: Page) -> tuple[dict[str, str], audit.AuditFilter, int | None]:
    params = p.request.query_params
    shown = {name: params.get(name, "").strip()[:limit]
             for name, limit in {**_TEXT_FILTERS, "since": 40, "until": 40}.items()}
    cursor_text = params.get("cursor", "").strip()
    if cursor_text and (not cursor_text.isdigit() or len(cursor_text) > 12):
        raise InvalidInput("cursor must come from an 'Older entries' link", field="cursor")
    filters = audit.AuditFilter(
        **{name: shown[name] or None for name in _TEXT_FILTERS},
        since=_moment("since", shown["since"]), until=_moment("until", shown["until"]))
    return shown, filters, int(cursor_text) if cursor_text else None


@page
async def audit_list(p: Page) -> Response:
    """``GET /audit``: at most 100 entries per page, newest first."""
    error = None
    try:
        shown, filters, cursor = _filters(p)
    except InvalidInput as exc:
        shown, filters, cursor = ({k: "" for k in (*_TEXT_FILTERS, "since", "until")},
                                  audit.AuditFilter(), None)
        error = PageError.of(exc)
    try:
        async with p.transaction() as session:
            scope = (await audit.audit_scope(session, p.actor)).require()
            events = await audit.list_events(session, scope, filters, limit=_PAGE,
                                             cursor=cursor)
    except ServiceError as exc:
        return p.failure(exc)
    query = {k: v for k, v in shown.items() if v}
    older = (urlencode({**query, "cursor": str(events[-1].id)})
             if len(events) == _PAGE else None)
    return p.render("audit/list.html", "audit", {
        "title": "Audit", "events": events, "filters": shown, "filtered": bool(query),
        "actions": sorted(audit.ACTIONS), "summaries": audit.ACTIONS,
        "older_query": older, "paged": cursor is not None,
        "export_query": urlencode(query), "error": error,
    }, status_code=422 if error else 200)
