"""Signing a browser out of a session origin: ``/.ewsgate/logout`` and the ended page.

Both answers make the browser drop what it holds for the session origin:

- ``Clear-Site-Data: "cache", "storage"`` — the origin's HTTP cache (device pages), and its
  storage (localStorage, IndexedDB, service workers should any exist). Both are per origin.
- one expiring ``Set-Cookie`` for each cookie the browser sent (the relay's own and the
  device's), host-only with ``Path=/``. ``Clear-Site-Data: "cookies"`` is *not* sent: browsers
  apply it to the whole registrable domain, which is every session on the relay (unless the
  relay's domain is on the Public Suffix List), so ending one session would sign the technician
  out of all the others and wipe their device logins.

Sign-out itself (:meth:`ewsgate.relay.browser_auth.BrowserAuth.sign_out`) also refuses every
cookie of the session issued before it, so a copy taken earlier does not keep the session.
A sign-out link is only honoured from the session's own pages or a typed address
(``Sec-Fetch-Site`` ``same-origin``/``none``, or absent), so another site cannot sign the
technician out.
"""

from __future__ import annotations

__all__ = ["LOGOUT_PATH", "MAX_EXPIRED_COOKIES", "clearing_headers", "sign_out_allowed"]

LOGOUT_PATH = "/.ewsgate/logout"
#: at most this many cookies are expired by name in one answer
MAX_EXPIRED_COOKIES = 64
CLEAR_SITE_DATA = b'"cache", "storage"'
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def clearing_headers(cookie_header: bytes | None) -> list[tuple[bytes, bytes]]:
    """``Clear-Site-Data`` and one expiring ``Set-Cookie`` per cookie name the browser sent."""
    headers = [(b"Clear-Site-Data", CLEAR_SITE_DATA)]
    seen: set[bytes] = set()
    for part in (cookie_header or b"").split(b";"):
        name = part.split(b"=", 1)[0].strip()
        if not name or name in seen or not all(byte in _TOKEN for byte in name):
            continue
        seen.add(name)
        headers.append((b"Set-Cookie", name + b"=; Max-Age=0; Path=/; Secure; HttpOnly; "
                        b"SameSite=Lax"))
        if len(seen) >= MAX_EXPIRED_COOKIES:
            break
    return headers


def sign_out_allowed(sec_fetch_site: bytes | None) -> bool:
    """True if a sign-out request came from the session itself or the address bar."""
    return sec_fetch_site is None or sec_fetch_site.lower() in (b"same-origin", b"none")
