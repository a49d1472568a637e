"""HTTP face of the authorization server: authorize, token, RFC 8414 metadata, JWKS.

Thin by design: each handler turns the request into plain values, asks
:class:`~.server.AuthorizationServer`, and turns the answer into a response. What every route
adds on the way out:

- ``Cache-Control: no-store`` on everything carrying codes, tokens or errors (OAuth 2.1 §3.2.3),
  and ``Pragma: no-cache`` for old caches;
- no CORS: no ``Access-Control-*`` header is ever sent, so no other origin can read a response
  (the token endpoint is for relays, which are servers, not browsers);
- no framing: ``X-Frame-Options: DENY`` and a CSP with ``frame-ancestors 'none'`` on the
  authorization endpoint's pages (RFC 9700 §4.16 clickjacking);
- redirects are ``303 See Other`` (RFC 9700 §4.12: never 307 after credentials).

``GET /oauth/authorize`` reads the portal's web-session cookie (:mod:`ewsgate.portal.auth`);
without a valid one it sends the browser to ``/login?next=<this request>`` and the login page
returns here (it accepts only same-origin paths as ``next``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ewsgate.portal.auth import AuthSettings, session_from_cookie
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.server import (
    AUTHORIZE_PATH,
    TOKEN_PATH,
    AuthorizationServer,
    AuthorizeErrorPage,
    AuthorizeLogin,
    Principal,
)
from ewsgate.portal.services.errors import AuthenticationFailed
from ewsgate.portal.ui.rendering import Renderer

__all__ = ["JWKS_PATH", "METADATA_PATH", "OAuthEndpoints", "metadata"]

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"
MAX_TOKEN_BODY = 16 * 1024

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_JSON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def metadata(issuer: str) -> dict[str, Any]:
    """The RFC 8414 authorization server metadata document."""
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": [],
    }


@dataclass
class OAuthEndpoints:
    """The four routes and what they need."""

    server: AuthorizationServer
    keys: SigningKeys
    auth: AuthSettings
    renderer: Renderer
    clock: Callable[[], datetime]
    #: brings in keys made or retired by other replicas before the JWKS is answered
    refresh_keys: Callable[[], Awaitable[None]] | None = None

    def routes(self) -> list[Route]:
        return [
            Route(AUTHORIZE_PATH, self.authorize, methods=["GET"], include_in_schema=False),
            Route(TOKEN_PATH, self.token, methods=["POST"], include_in_schema=False),
            Route(METADATA_PATH, self.metadata, methods=["GET"], include_in_schema=False),
            Route(JWKS_PATH, self.jwks, methods=["GET"], include_in_schema=False),
        ]

    async def _principal(self, request: Request) -> Principal | None:
        cookie = request.cookies.get(self.auth.cookie_name)
        if not cookie:
            return None
        try:
            async with self.server.db.transaction() as session:
                actor, _info = await session_from_cookie(session, cookie, settings=self.auth,
                                                         clock=self.clock)
        except AuthenticationFailed:
            return None
        return Principal(user_id=actor.user_id, email=actor.email)

    async def authorize(self, request: Request) -> Response:
        """``GET /oauth/authorize``: see :meth:`AuthorizationServer.authorize`."""
        user = await self._principal(request)
        outcome = await self.server.authorize(
            list(request.query_params.multi_items()), request.url.query, user)
        if isinstance(outcome, AuthorizeLogin):
            return RedirectResponse("/login?next=" + quote(outcome.next_path, safe=""),
                                    status_code=303, headers=_PAGE_HEADERS)
        if isinstance(outcome, AuthorizeErrorPage):
            titles = {"invalid_client": "Unknown Remote Technician relay"}
            return self.renderer.page("message_public.html", {
                "title": titles.get(outcome.error, "This sign-in request was refused"),
                "message": outcome.message,
                "back_href": "/devices",
                "back_label": "Back to the portal",
            }, status_code=outcome.status, headers=_PAGE_HEADERS)
        return RedirectResponse(outcome.location, status_code=303, headers=_PAGE_HEADERS)

    async def token(self, request: Request) -> Response:
        """``POST /oauth/token`` (``application/x-www-form-urlencoded``, HTTP Basic)."""
        if request.url.query:
            return self._token_error("invalid_request", "the token endpoint takes its "
                                     "parameters in the request body, never in the URL")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self._token_error("invalid_request", "send the parameters as "
                                     "application/x-www-form-urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_TOKEN_BODY:
                return self._token_error("invalid_request", "request body too large", 413)
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                               strict_parsing=bool(body), max_num_fields=20)
        except (ValueError, UnicodeDecodeError):
            return self._token_error("invalid_request", "the request body is not a valid "
                                     "form encoding")
        reply = await self.server.token(params, request.headers.get("authorization"))
        return JSONResponse(reply.body, status_code=reply.status,
                            headers={**_NO_STORE, **_JSON_HEADERS, **reply.headers})

    @staticmethod
    def _token_error(error: str, description: str, status: int = 400) -> Response:
        return JSONResponse({"error": error, "error_description": description},
                            status_code=status, headers={**_NO_STORE, **_JSON_HEADERS})

    async def metadata(self, request: Request) -> Response:
        """``GET /.well-known/oauth-authorization-server`` (RFC 8414)."""
        return JSONResponse(metadata(self.server.config.issuer),
                            headers={"Cache-Control": "public, max-age=300", **_JSON_HEADERS})

    async def jwks(self, request: Request) -> Response:
        """``GET /.well-known/jwks.json``: every published signing key (public halves)."""
        if self.refresh_keys is not None:
            await self.refresh_keys()
        return JSONResponse(self.keys.jwks(),
                            headers={"Cache-Control": "public, max-age=60", **_JSON_HEADERS})
