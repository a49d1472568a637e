"""The audit trail as CSV or JSON lines, one entry at a time (the API streams the output).

- **CSV** (RFC 4180, UTF-8, header row; columns :data:`CSV_COLUMNS`). Users, devices and
  relays choose many of the texts in the trail (names, e-mails, user agents, device details),
  so a cell that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``,
  ``@``, tab or carriage return) is prefixed with ``'`` (OWASP "CSV injection"), as in the
  Remote Technician Log export. ``before``/``after`` are compact JSON.
- **JSON lines**: one JSON object per line, the same fields as the API's JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from ewsgate.portal.store.models import AuditEvent

__all__ = ["CSV_COLUMNS", "as_dict", "csv_lines", "json_lines"]

CSV_COLUMNS = ("id", "time", "actor_type", "actor_id", "actor", "client_ip", "user_agent",
               "action", "target_type", "target_id", "dealer_id", "customer_id", "before",
               "after", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """An entry as plain JSON-ready data (the API's and the JSON-lines export's shape)."""
    return {
        "id": event.id, "at": _iso(event.at), "actor_type": event.actor_type,
        "actor_id": event.actor_id, "actor": event.actor_label, "client_ip": event.client_ip,
        "user_agent": event.user_agent, "action": event.action,
        "target_type": event.target_type, "target_id": event.target_id,
        "dealer_id": event.dealer_id, "customer_id": event.customer_id,
        "before": event.before_state, "after": event.after_state, "detail": event.detail,
    }


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else (
        json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        if isinstance(value, (dict, list)) else str(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_row(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


async def csv_lines(events: AsyncIterable[AuditEvent]) -> AsyncIterator[str]:
    """The header row, then one CSV row per entry."""
    yield _csv_row(list(CSV_COLUMNS))
    async for event in events:
        data = as_dict(event)
        yield _csv_row([data["id"], data["at"], *(_cell(data[k]) for k in (
            "actor_type", "actor_id", "actor", "client_ip", "user_agent", "action",
            "target_type", "target_id")), _cell(data["dealer_id"]), _cell(data["customer_id"]),
            _cell(data["before"]), _cell(data["after"]), _cell(data["detail"])])


async def json_lines(events: AsyncIterable[AuditEvent]) -> AsyncIterator[str]:
    """One compact JSON object per entry, each ending in a newline."""
    async for event in events:
        yield json.dumps(as_dict(event), separators=(",", ":"), ensure_ascii=False) + "\n"
