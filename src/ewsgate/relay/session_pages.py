"""The relay's own pages: what a person sees when the relay, not the device, answers.

Each page is small, self-contained HTML (inline style only; the CSP allows it) that says what
happened, why, and what to do next, with a link back to the portal. Every page is sent with
``Cache-Control: no-store`` so that an ended session's page never outlives a new one, and with
the same security headers as proxied pages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["Page", "render"]


@dataclass(frozen=True, slots=True)
class Page:
    """A rendered relay page: status code, the log outcome code, and the HTML body."""

    status: int
    code: str
    body: bytes


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Remote Technician</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;
margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}}
main{{background:#fff;border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem 2.5rem;
max-width:34rem}}
h1{{font-size:1.35rem;margin:0 0 .75rem}} p{{line-height:1.5}}
.code{{color:#6b7280;font-size:.8rem}}
a.button{{display:inline-block;margin-top:.5rem;padding:.55rem 1rem;background:#2156d9;color:#fff;
border-radius:6px;text-decoration:none}}
</style></head>
<body><main>
<h1>{title}</h1>
<p>{message}</p>
{action}
<p class="code">Remote Technician · {code}</p>
</main></body></html>
"""

_PAGES: dict[str, tuple[int, str, str, str]] = {
    # kind: (status, title, message, action label)
    "session_ended": (
        410, "This Remote Technician session has ended",
        "This Remote Technician session has ended — start a new one from the portal.",
        "Go to the portal"),
    "session_not_found": (
        404, "No Remote Technician session here",
        "There is no live Remote Technician session at this address. It may not have started "
        "yet, or it ended. Open the device in the portal to start a new one.",
        "Go to the portal"),
    "not_a_session_host": (
        404, "Not a Remote Technician address",
        "This server only answers on session addresses of the form s-&lt;id&gt;.&lt;domain&gt;. "
        "Open the device from the portal to get one.", "Go to the portal"),
    "cross_site_refused": (
        403, "Request refused",
        "", "Go to the portal"),
    "read_only_refused": (
        403, "Read-only session",
        "This Remote Technician session is read-only under the customer's policy: you can "
        "view the device's pages, not change them.", "Go to the portal"),
    "not_signed_in": (
        401, "Sign-in needed",
        "This request needs a signed-in session, and no valid session cookie came with it. "
        "Reload the page to sign in through the portal.", "Go to the portal"),
    "auth_failed": (
        403, "Sign-in failed",
        "", "Go to the portal"),
    "device_unreachable": (
        502, "The device cannot be reached",
        "The relay could not reach the device through the site's agent. The agent may have "
        "lost its connection, or the device may be off. Try again in a moment, or check the "
        "session's job in the portal.", "Go to the portal"),
    "bad_gateway": (
        502, "The device sent a response the relay cannot pass on",
        "", "Go to the portal"),
    "device_timeout": (
        504, "The device did not answer in time",
        "The device accepted the request but sent no response in time. Try again; if it keeps "
        "happening, check the device.", "Go to the portal"),
    "bad_request": (
        400, "Bad request", "", "Go to the portal"),
    "portal_unreachable": (
        503, "Remote Technician is unavailable for a moment",
        "This relay cannot reach the portal, so it cannot start or resume a session now.",
        "Go to the portal"),
    "misdirected": (
        421, "Wrong connection for this address",
        "This connection belongs to another session address. Reload the page.",
        "Go to the portal"),
    "navigation_refused": (
        403, "The device's redirect was stopped",
        "The device's page tried to send your browser to an internal address outside this "
        "session (another host on the device's network, your own computer or another "
        "session). The relay stopped it. Go back, or open the device's start page from the "
        "portal again.", "Go to the portal"),
    "cross_site_navigation": (
        403, "Opened from another site", "", "Go to the portal"),
    "sign_in_limited": (
        429, "Too many sign-ins", "", "Go to the portal"),
    "signed_out": (
        200, "Signed out of this Remote Technician session",
        "This browser no longer holds the session: its cookie was removed and the relay will "
        "not accept it again. The session itself goes on until it ends in the portal; open the "
        "device from the portal to sign in again.", "Go to the portal"),
    "audit_log_unavailable": (
        503, "The Remote Technician Log is unavailable",
        "This relay cannot write the session's log right now, and nothing is passed to or from "
        "the device unless it is logged. Nothing was sent to the device for this request. "
        "This page retries by itself; if it persists, tell the relay's operator (its spool "
        "disk is full or read-only).", "Go to the portal"),
    "reconnecting": (
        503, "Reconnecting to the device",
        "The relay is reconnecting to the site's agent (it restarted a moment ago). This page "
        "retries by itself in a few seconds; your session is still live.", "Go to the portal"),
    "internal_error": (
        500, "The relay failed on this request",
        "Something went wrong inside the relay while handling this request; it was logged. "
        "Try again; if it keeps happening, tell the relay's operator.", "Go to the portal"),
}

#: pages that reload themselves (503s: the condition is expected to pass)
_RETRYING = frozenset({"audit_log_unavailable", "reconnecting"})
_RETRY_META = '<meta http-equiv="refresh" content="3">\n'


def render(kind: str, *, portal_url: str, detail: str | None = None,
           status: int | None = None, continue_to: str | None = None) -> Page:
    """The page ``kind`` (a key of the table above); ``detail`` replaces or follows the text.

    ``continue_to``: a same-origin path the person may open on purpose (a second link).
    """
    default_status, title, message, label = _PAGES[kind]
    text = message
    if detail:
        escaped = html.escape(detail)
        text = f"{message} {escaped}" if message else escaped
    action = (f'<p><a class="button" href="{html.escape(portal_url, quote=True)}">'
              f"{html.escape(label)}</a></p>")
    if continue_to and continue_to.startswith("/") and not continue_to.startswith("//"):
        shown = html.escape(continue_to[:200])
        action = (f'<p>If you meant to open <code>{shown}</code> on this device, continue: '
                  f'<a id="continue" href="{html.escape(continue_to, quote=True)}">open it'
                  f"</a>.</p>{action}")
    body = _TEMPLATE.format(title=html.escape(title), message=text, action=action,
                            code=html.escape(kind))
    if kind in _RETRYING:
        body = body.replace("<title>", _RETRY_META + "<title>", 1)
    return Page(status or default_status, kind, body.encode("utf-8"))
