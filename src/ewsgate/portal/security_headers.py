"""Security headers on every portal response: a pure ASGI middleware.

Theory of operation: the portal serves its own HTML, CSS and JavaScript and nothing else, so one
strict policy fits every page. The middleware wraps ``send`` and, on ``http.response.start``,
adds each header of :class:`SecurityHeadersConfig` that the response did not set itself — a
route that needs a stricter or different policy (the OAuth pages, a JSON-only endpoint) sets
its own header and wins. ``Strict-Transport-Security`` is added only when the request arrived
over HTTPS (``scope["scheme"] == "https"``, which uvicorn derives from the socket or, behind a
trusted proxy, from ``X-Forwarded-Proto``): HSTS on plain HTTP is ignored by browsers and would
mislead a reader of the headers.

The policy, and why:

- ``default-src 'self'`` and ``script-src 'self'`` with no ``'unsafe-inline'``: the templates
  hold no inline script, style attribute or event handler, so an injected ``<script>`` cannot run.
- ``frame-ancestors 'none'`` plus ``X-Frame-Options: DENY`` (older browsers): no clickjacking
  of the Remote Technician switch or the *Open device web page* button.
- ``form-action 'self'``, ``base-uri 'none'``, ``object-src 'none'``: an injected form or
  ``<base>`` cannot send data elsewhere.
- ``Referrer-Policy: same-origin``: device ids in URLs never leak to other sites.
- ``Cross-Origin-Opener-Policy: same-origin``: a page opened from the portal (a session origin)
  gets no handle on the portal's window.

WebSocket scopes and lifespan events pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_CSP",
    "SecurityHeadersConfig",
    "SecurityHeadersMiddleware",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class SecurityHeadersConfig:
    """The headers added to every response; ``hsts_max_age`` applies on HTTPS only."""

    content_security_policy: str = DEFAULT_CSP
    referrer_policy: str = "same-origin"
    frame_options: str = "DENY"
    hsts_max_age: int = 63072000  # two years, as hstspreload.org asks
    hsts_include_subdomains: bool = False
    permissions_policy: str = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.hsts_max_age < 0:
            raise ValueError("hsts_max_age must be zero or positive (seconds)")
        if "frame-ancestors" not in self.content_security_policy:
            raise ValueError("the portal's CSP must say frame-ancestors "
                             "(portal pages must never be framed)")

    def headers(self, *, https: bool) -> list[tuple[bytes, bytes]]:
        """The header list for one response, lower-case names, as ASGI wants them."""
        pairs = [
            ("content-security-policy", self.content_security_policy),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", self.referrer_policy),
            ("x-frame-options", self.frame_options),
            ("cross-origin-opener-policy", "same-origin"),
            ("permissions-policy", self.permissions_policy),
            *self.extra,
        ]
        if https and self.hsts_max_age > 0:
            value = f"max-age={self.hsts_max_age}"
            if self.hsts_include_subdomains:
                value += "; includeSubDomains"
            pairs.append(("strict-transport-security", value))
        return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


class SecurityHeadersMiddleware:
    """Adds :class:`SecurityHeadersConfig` headers to each HTTP response that lacks them."""

    def __init__(self, app: ASGIApp, config: SecurityHeadersConfig | None = None) -> None:
        self.app = app
        self.config = config or SecurityHeadersConfig()
        self._plain = self.config.headers(https=False)
        self._https = self.config.headers(https=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = self._https if scope.get("scheme") == "https" else self._plain

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in wanted if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
