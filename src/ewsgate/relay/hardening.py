"""Response hardening and the cross-site request check: confine every page to its session.

A device's pages run on the session origin, so they are treated as hostile content: they must
not reach the portal, another session's origin or any third site, and no other site may drive
the device through the technician's browser.

Responses (:func:`harden_response_headers`):

- dropped from the device: every ``Access-Control-*`` header (no CORS: nothing cross-origin may
  read a session), its own ``Content-Security-Policy`` (replaced by ours, not merged),
  ``Service-Worker-Allowed``, ``X-Frame-Options``, ``Strict-Transport-Security`` and
  ``Public-Key-Pins`` (the relay, not the device, speaks for the origin's TLS), ``Alt-Svc``
  (would point the browser elsewhere), ``Clear-Site-Data`` (would clear the relay's cookie),
  ``Report-To`` / ``NEL`` / ``Reporting-Endpoints`` (would send reports to third parties) and
  ``Origin-Agent-Cluster``;
- added: :func:`content_security_policy` (below), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin``, ``Cross-Origin-Opener-Policy: same-origin``,
  ``Cross-Origin-Resource-Policy: same-origin``, ``X-Frame-Options: SAMEORIGIN`` (for browsers
  without ``frame-ancestors``), a ``Permissions-Policy`` turning off powerful features and
  ``Strict-Transport-Security`` (:data:`HSTS`).

The CSP confines fetches, forms, frames, WebSockets and ``<base>`` to the session origin.
``script-src`` allows ``'unsafe-inline'`` and ``'unsafe-eval'`` because embedded web servers are
built on inline ``<script>`` blocks, ``onclick=`` handlers, ``javascript:`` links and
``eval``-style frame loaders (HP, Ricoh and Brother pages all use them) and the relay cannot add
nonces to pages it does not understand; the damage inline script could do is bounded by the rest
of the policy: ``connect-src``, ``form-action`` and ``frame-src`` keep data on the session
origin, ``worker-src 'none'`` forbids service workers (which could outlive the session) and
``object-src 'none'`` removes plug-ins.

Requests (:func:`check_request_site`): a session origin is *same-site* with every other session
on the relay's domain, so ``SameSite`` cookies alone do not stop another device's page from
sending requests with this session's cookie. The relay therefore accepts a request only if
``Sec-Fetch-Site`` is ``same-origin`` or ``none`` (typed URL, bookmark), or it is a top-level
``GET``/``HEAD`` navigation (a link from the portal, the OAuth callback). Browsers without
``Sec-Fetch-*`` are held to ``Origin``: an unsafe method whose ``Origin`` is not the session
origin is refused. A WebSocket handshake must carry ``Origin`` equal to the session origin
(cross-site WebSocket hijacking). A service-worker script fetch is refused outright.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "HSTS",
    "SAFE_METHODS",
    "Refusal",
    "check_request_site",
    "content_security_policy",
    "dropped_response_header",
    "harden_response_headers",
    "security_header_block",
    "security_headers",
]

SAFE_METHODS = frozenset({b"GET", b"HEAD"})
#: HSTS on every session origin: each session host is used once, so a day covers the session
#: (30 minutes at most) and its ended page; ``includeSubDomains`` belongs on the relay's parent
#: domain, which the operator serves (docs/relay.md)
HSTS = b"max-age=86400"

_DROP_PREFIXES = (b"access-control-",)
_DROP = frozenset({
    b"content-security-policy", b"content-security-policy-report-only",
    b"x-content-security-policy", b"x-webkit-csp", b"service-worker-allowed",
    b"x-frame-options", b"strict-transport-security", b"public-key-pins",
    b"public-key-pins-report-only", b"alt-svc", b"clear-site-data", b"report-to", b"nel",
    b"reporting-endpoints", b"origin-agent-cluster", b"x-content-type-options",
    b"referrer-policy", b"cross-origin-opener-policy", b"cross-origin-resource-policy",
    b"cross-origin-embedder-policy", b"permissions-policy", b"feature-policy",
    b"timing-allow-origin", b"x-permitted-cross-domain-policies", b"expect-ct",
})


@functools.lru_cache(maxsize=1024)
def content_security_policy(session_host: str) -> str:
    """The policy for every proxied response; ``session_host`` includes a non-443 port."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob:",
        f"connect-src 'self' wss://{session_host}",
        "form-action 'self'",
        "frame-src 'self'",
        "frame-ancestors 'self'",
        "base-uri 'self'",
        "object-src 'none'",
        "worker-src 'none'",
        "manifest-src 'self'",
    ])


def security_headers(session_host: str) -> list[tuple[bytes, bytes]]:
    """The headers the relay adds to every response it sends on a session origin."""
    return list(_security_headers(session_host))


@functools.lru_cache(maxsize=1024)
def _security_headers(session_host: str) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"Content-Security-Policy", content_security_policy(session_host).encode("ascii")),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"Referrer-Policy", b"same-origin"),
        (b"Cross-Origin-Opener-Policy", b"same-origin"),
        (b"Cross-Origin-Resource-Policy", b"same-origin"),
        (b"X-Frame-Options", b"SAMEORIGIN"),
        (b"Permissions-Policy",
         b"camera=(), microphone=(), geolocation=(), usb=(), serial=(), hid=(), payment=()"),
        (b"Strict-Transport-Security", HSTS),
    )


@functools.lru_cache(maxsize=1024)
def security_header_block(session_host: str) -> bytes:
    """:func:`security_headers` as serialised header lines (``Name: value\r\n`` each).

    Built once per session host: the proxy appends it to every response head it writes instead
    of building, validating and serialising the same seven headers for each response.
    """
    return b"".join(name + b": " + value + b"\r\n" for name, value in
                    _security_headers(session_host))


def dropped_response_header(lower_name: bytes) -> bool:
    """True for a device response header the relay never passes on (see the module docstring).

    ``lower_name`` is the header name in lower case.
    """
    return lower_name in _DROP or lower_name.startswith(_DROP_PREFIXES)


def harden_response_headers(
    headers: list[tuple[bytes, bytes]], session_host: str
) -> list[tuple[bytes, bytes]]:
    """Drop the device's security/CORS headers and add the relay's own."""
    kept = [(name, value) for name, value in headers
            if not dropped_response_header(name.lower())]
    return kept + security_headers(session_host)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused; ``code`` goes to the access log, ``message`` to the page."""

    code: str
    message: str


def _header(headers: list[tuple[bytes, bytes]] | dict[bytes, bytes],
            name: bytes) -> bytes | None:
    if isinstance(headers, dict):  # first value by lower-case name, as the proxy passes it
        return headers.get(name)
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def check_request_site(
    method: bytes, headers: list[tuple[bytes, bytes]] | dict[bytes, bytes],
    session_origin: str, *,
    websocket: bool = False,
) -> Refusal | None:
    """None if the request may proceed, else why it is refused (see the module docstring)."""
    origin = _header(headers, b"origin")
    site = _header(headers, b"sec-fetch-site")
    mode = _header(headers, b"sec-fetch-mode")
    dest = _header(headers, b"sec-fetch-dest")
    expected = session_origin.encode("ascii")
    if _header(headers, b"service-worker") is not None or dest == b"serviceworker":
        return Refusal("service_worker_refused",
                       "Service workers are not allowed on a Remote Technician session.")
    if websocket:
        if origin != expected:
            shown = origin.decode("latin-1") if origin else "no Origin"
            return Refusal("websocket_origin_refused",
                           f"A WebSocket from {shown} may not connect to this session; only "
                           "pages of this session may.")
        return None
    if site is not None:
        site = site.lower()
        if site in (b"same-origin", b"none"):
            return None
        if method in SAFE_METHODS and mode == b"navigate" and dest in (None, b"document"):
            return None
        return Refusal("cross_site_refused",
                       f"A {site.decode('latin-1')} request ({method.decode('latin-1')}) "
                       "was refused: only pages of this session may send requests to it.")
    if method not in SAFE_METHODS and origin is not None and origin != expected:
        return Refusal("cross_origin_refused",
                       f"A {method.decode('latin-1')} request from "
                       f"{origin.decode('latin-1')} was refused: only pages of this session "
                       "may change anything on this device.")
    return None
