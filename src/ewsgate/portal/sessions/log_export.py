"""Export the Remote Technician Log of a job as CSV or HAR 1.2.

Both exports are pure functions over rows in ``seq`` order; the API streams their output.

- **CSV** (RFC 4180, UTF-8, header row): ``seq, time, user, method, url, status, bytes_in,
  bytes_out, duration_ms, outcome, detail, client``. A device controls the URLs and details
  that end up in the log, so a cell that a spreadsheet would read as a formula (starting with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with ``'`` (OWASP "CSV
  injection").
- **HAR** 1.2 (the HTTP Archive format browsers' developer tools read): one entry per request
  with ``startedDateTime``, ``time`` (the duration), ``request`` (method, absolute URL, body
  size = bytes from the browser) and ``response`` (status, body size = bytes to the browser);
  the log keeps no headers or bodies, so those are empty, and ``outcome``/``detail`` go in the
  entry's ``comment``; the browser's address goes in ``_clientAddress`` (HAR's custom-field
  convention) and the comment. A relative URL is made absolute against the session URL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urljoin

__all__ = ["CSV_COLUMNS", "LogRow", "to_csv", "to_har"]

CSV_COLUMNS = ("seq", "time", "user", "method", "url", "status", "bytes_in", "bytes_out",
               "duration_ms", "outcome", "detail", "client")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class LogRow(Protocol):
    """What an export needs of a log entry (``JobLogEntry`` has these attributes)."""

    seq: int
    at: datetime
    user_email: str | None
    method: str
    url: str
    status: int | None
    bytes_in: int
    bytes_out: int
    duration_ms: int
    outcome: str
    detail: str | None
    client: str | None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def purpose_line(purpose: Mapping[str, Any] | None,
                 approval: Mapping[str, Any] | None) -> str:
    """One line of why the session was opened and who approved it ("" when nothing was said)."""
    parts = []
    if purpose and purpose.get("reason"):
        parts.append(f"reason: {purpose['reason']}")
    if purpose and purpose.get("ticket"):
        parts.append(f"ticket: {purpose['ticket']}")
    if purpose and purpose.get("read_only"):
        parts.append("read-only requested")
    if approval and approval.get("approved_by"):
        parts.append(f"approved by {approval['approved_by']}")
    return "; ".join(parts)


def to_csv(rows: Iterable[LogRow], *, purpose: str = "") -> str:
    """The log as CSV text with a header row; ``purpose`` (why the session was opened) comes
    as a first record ``seq = "purpose"`` so the file stays one table."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    if purpose:
        writer.writerow(["purpose", "", "", "", "", "", "", "", "", "", _cell(purpose)])
    for row in rows:
        writer.writerow([
            row.seq, _iso(row.at), _cell(row.user_email), _cell(row.method), _cell(row.url),
            "" if row.status is None else row.status, row.bytes_in, row.bytes_out,
            row.duration_ms, _cell(row.outcome), _cell(row.detail), _cell(row.client),
        ])
    return out.getvalue()


def _reason(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def to_har(rows: Iterable[LogRow], *, base_url: str, creator_version: str,
           page_title: str) -> dict[str, Any]:
    """The log as a HAR 1.2 document (a dict ready for ``json.dumps``)."""
    entries = []
    for row in rows:
        url = urljoin(base_url, row.url)
        entries.append({
            "startedDateTime": _iso(row.at),
            "time": row.duration_ms,
            "request": {
                "method": row.method,
                "url": url,
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": [],
                "queryString": [],
                "headersSize": -1,
                "bodySize": row.bytes_in,
            },
            "response": {
                "status": row.status or 0,
                "statusText": _reason(row.status),
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": [],
                "content": {"size": row.bytes_out, "mimeType": ""},
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": row.bytes_out,
            },
            "cache": {},
            "timings": {"send": 0, "wait": row.duration_ms, "receive": 0},
            "comment": f"#{row.seq} {row.user_email or ''} {row.outcome}"
                       + (f": {row.detail}" if row.detail else "")
                       + (f" (client {row.client})" if row.client else ""),
            # HAR has no field for the client's address; custom fields start with "_"
            "_clientAddress": row.client or "",
        })
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "ewsgate", "version": creator_version},
            "pages": [],
            "comment": page_title,
            "entries": entries,
        }
    }
