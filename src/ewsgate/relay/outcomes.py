"""What the Remote Technician Log says happened, and the pages sent when the relay cannot go on.

One place names the outcomes of failures so that the log tells the truth about them:

- a failure on the device side (a reset tunnel stream, the agent gone, a device that resets,
  closes early or stalls) is ``error`` with a detail saying which (``device_reset: …``,
  ``device_body_incomplete: …``, ``device_timeout``); it is never the browser's fault;
- a browser that leaves is ``client_gone``;
- a bug is ``error`` with ``internal: <exception type>`` (and a traceback in the relay's log,
  with the session id);
- a response the audit log could not record is not delivered: ``error`` /
  ``audit_log_unavailable``;
- a WebSocket (:func:`websocket_outcome`) is ``ok`` after a close handshake, ``ended`` (close
  1008) when the session ended or was revoked under it, ``error`` when a side broke the
  protocol or the device's side failed mid-stream (a device reset, a tunnel stream reset:
  ``device_reset: …`` with the cause), ``client_gone`` when the browser vanished.

:func:`raw_page` serialises a whole relay page as bytes for the cases where the browser
connection's HTTP state can no longer carry a normal response (a response head was already
composed, then replaced): the connection is closed after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ewsgate.relay.hardening import security_headers
from ewsgate.relay.session_pages import render
from ewsgate.relay.ws_bridge import POLICY_VIOLATION, Side, WebSocketStats

__all__ = [
    "AUDIT_LOG_UNAVAILABLE",
    "CLIENT_GONE",
    "DEVICE_FAILED_TEXT",
    "RETRY_AFTER_SECONDS",
    "RawPage",
    "body_failure",
    "device_failure",
    "internal",
    "raw_page",
    "websocket_outcome",
]

#: the outcome of a request whose browser went away before its response was complete
CLIENT_GONE = "client_gone"
#: the detail of a request refused (or a response withheld) because the spool failed
AUDIT_LOG_UNAVAILABLE = ("audit_log_unavailable: the spool could not record this request, so "
                         "its response was not delivered")
#: what the 502 page says after a device-side failure
DEVICE_FAILED_TEXT = ("The connection to the device failed while it was answering (the device "
                      "or the site's agent reset it). Try again.")
#: what ``Retry-After`` says on a 503 (the audit log, a relay reconnecting)
RETRY_AFTER_SECONDS = 2


def device_failure(exc: BaseException) -> str:
    """The detail of a device-side stream failure (before the response's end)."""
    return f"device_reset: {exc}"[:300]


def body_failure(exc: BaseException) -> str:
    """The detail of a response body the device did not finish."""
    if isinstance(exc, TimeoutError):
        return "device_body_incomplete: the device stopped sending mid-body (timeout)"
    return f"device_body_incomplete: {exc}"[:300]


def internal(exc: BaseException) -> str:
    """The detail of an unexpected exception (the traceback goes to the relay's log)."""
    return f"internal: {type(exc).__name__}"


def websocket_outcome(stats: WebSocketStats, *, ended: bool) -> tuple[str, str]:
    """The outcome and detail of one WebSocket's entry, from how it went."""
    summary = stats.summary()
    if ended:
        if stats.close_code != POLICY_VIOLATION:  # a close was under way when it ended
            summary = f"the session ended: close 1008 sent both ways; {summary}"
        return "ended", summary[:300]
    if stats.vanished == Side.DEVICE.value:
        return "error", f"device_reset: {summary}"[:300]
    if stats.error is not None:
        return "error", summary[:300]
    if stats.vanished == Side.BROWSER.value:
        return CLIENT_GONE, summary[:300]
    return "ok", summary[:300]


@dataclass(frozen=True, slots=True)
class RawPage:
    """A whole HTTP/1.1 response (head and body) ending its connection."""

    status: int
    data: bytes


_REASONS = {500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
            504: b"Gateway Timeout"}


def raw_page(kind: str, *, portal_url: str, session_host: str,
             detail: str | None = None) -> RawPage:
    """The relay page ``kind`` as bytes, with ``Connection: close`` and the security headers
    (``Retry-After`` on a 503)."""
    page = render(kind, portal_url=portal_url, detail=detail)
    headers: list[tuple[bytes, bytes]] = [
        (b"Content-Type", b"text/html; charset=utf-8"), (b"Cache-Control", b"no-store"),
        (b"Content-Length", str(len(page.body)).encode()), (b"Connection", b"close")]
    if page.status == 503:
        headers.append((b"Retry-After", str(RETRY_AFTER_SECONDS).encode()))
    headers += security_headers(session_host)
    head = b"HTTP/1.1 %d %s\r\n" % (page.status, _REASONS.get(page.status, b"Error"))
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return RawPage(page.status, head + b"\r\n" + page.body)
