"""Where each request comes from, for the audit trail: a tiny pure-ASGI middleware.

It reads the client address from the ASGI scope — which uvicorn has already rewritten from
``X-Forwarded-For`` when, and only when, the connection comes from a trusted proxy (the
portal's ``forwarded_allow_ips``, see ``portal/main.py``) — and the ``User-Agent`` header, and
makes them the current :class:`~ewsgate.portal.services.audit.Origin` for everything the
request runs (a context variable, so service functions need no extra argument).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ewsgate.portal.services.audit import Origin, reset_origin, set_origin

__all__ = ["RequestOriginMiddleware"]


class RequestOriginMiddleware:
    """Sets the audit origin (client address, user agent) for each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        agent = None
        for name, value in scope.get("headers", ()):
            if name == b"user-agent":
                agent = value.decode("latin-1")
                break
        token = set_origin(Origin(client[0] if client else None, agent))
        try:
            await self.app(scope, receive, send)
        finally:
            reset_origin(token)
