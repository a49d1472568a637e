"""The OAuth 2.1 authorization server: the authorization and token endpoints' rules.

Theory of operation. Clients are relay nodes (confidential clients, ``client_id`` = the relay
id, ``client_secret_basic``); each remote session registers exactly one redirect URI,
``https://s-<id>.<relay domain>[:port]/.ewsgate/callback``, when it is created. The flow is the
authorization-code grant with PKCE (S256) and nothing else::

    relay ──302──► GET /oauth/authorize?response_type=code&client_id&redirect_uri
                        &state&code_challenge&code_challenge_method=S256
       1. client_id names a relay, redirect_uri equals (string comparison) the redirect URI of a
          session on that relay                     — else an error page, never a redirect
       2. a portal user is logged in                — else the login page, then back here
       3. state present                             — else an error page
       4. response_type=code, S256 challenge well-formed   — else error → redirect_uri
       5. the user owns the session, the session is live   — else access_denied → redirect_uri
       6. a code (256 bits, 60 s) bound to relay, session, user, redirect URI, challenge
    ◄──303── redirect_uri?code&state&iss

    relay ──► POST /oauth/token (Basic relay-id:secret)
                  grant_type=authorization_code&code&redirect_uri&code_verifier
       1. client authenticated                      — else 401 invalid_client
       2. grant_type=authorization_code             — else unsupported_grant_type
       3. the code is consumed atomically (first attempt wins; any later attempt is a reuse:
          it is refused and the token issued from the code is revoked)
       4. same client, not expired, same redirect URI, S256(verifier) = challenge,
          session still live and still the same user — else invalid_grant
    ◄── {"access_token": JWT, "token_type": "Bearer", "expires_in"}  (Cache-Control: no-store)

Every decision returns a value (:class:`AuthorizeOutcome`, :class:`TokenReply`) rather than
touching HTTP, so the FastAPI routes in :mod:`.routes` stay thin. A failed redemption still
commits the consumption of the code: a code gets exactly one attempt (OAuth 2.1 §4.1.3).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.oauth.client_auth import authenticate_relay, parse_basic_auth
from ewsgate.portal.oauth.errors import OAuthError
from ewsgate.portal.oauth.models import AuthorizationCode
from ewsgate.portal.oauth.pkce import check_challenge, check_verifier
from ewsgate.portal.oauth.redirects import redirect_uri_matches
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import RemoteSession, User

__all__ = [
    "AUTHORIZE_PATH",
    "REUSE_REASON",
    "TOKEN_PATH",
    "AuthorizationServer",
    "AuthorizeErrorPage",
    "AuthorizeLogin",
    "AuthorizeOutcome",
    "AuthorizeRedirect",
    "OAuthConfig",
    "Principal",
    "TokenReply",
]

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
MAX_CODE_SECONDS = 60
MAX_TOKEN_SECONDS = 30 * 60
_LIVE = ("verifying", "connecting", "ready")
REUSE_REASON = ("an authorization code of this session was used twice (a sign of a stolen "
                "code); the session was ended for safety. Start a new one from the portal")


@dataclass(frozen=True)
class OAuthConfig:
    """Authorization server settings; ``issuer`` is the portal's public URL (no trailing /)."""

    issuer: str
    code_ttl_seconds: int = MAX_CODE_SECONDS
    access_token_ttl_seconds: int = MAX_TOKEN_SECONDS

    def __post_init__(self) -> None:
        if not 1 <= self.code_ttl_seconds <= MAX_CODE_SECONDS:
            raise ValueError(f"code lifetime must be 1..{MAX_CODE_SECONDS} seconds")
        if not 1 <= self.access_token_ttl_seconds <= MAX_TOKEN_SECONDS:
            raise ValueError(f"access token lifetime must be 1..{MAX_TOKEN_SECONDS} seconds")
        if self.issuer.endswith("/") or not self.issuer.startswith(("http://", "https://")):
            raise ValueError("issuer must be an absolute http(s) URL without a trailing slash")


@dataclass(frozen=True)
class Principal:
    """The logged-in portal user, as the authorization endpoint needs it."""

    user_id: int
    email: str


@dataclass(frozen=True)
class AuthorizeRedirect:
    """Send the browser to ``location`` (303): a code or an error for the verified client."""

    location: str


@dataclass(frozen=True)
class AuthorizeLogin:
    """Nobody is logged in: show the login page, then come back to ``next_path``."""

    next_path: str


@dataclass(frozen=True)
class AuthorizeErrorPage:
    """Show an error page; the request cannot be answered by redirecting."""

    status: int
    error: str
    message: str


AuthorizeOutcome = AuthorizeRedirect | AuthorizeLogin | AuthorizeErrorPage


@dataclass(frozen=True)
class TokenReply:
    """The token endpoint's answer: status, JSON body and extra headers."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def _session_id_of(redirect_uri: str) -> str | None:
    """The session id named by a redirect URI's host (``s-<id>.…``); the caller still compares
    the whole URI exactly with the registered one — this only finds the row by primary key."""
    try:
        host = urlsplit(redirect_uri).hostname or ""
    except ValueError:
        return None
    label = host.split(".", 1)[0]
    return label[2:] if label.startswith("s-") and len(label) <= 66 else None


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _single(params: Sequence[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """The parameters as a dict, and the names given more than once (RFC 6749 §3.1)."""
    out: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in params:
        if name in out:
            repeated.add(name)
        out[name] = value
    return out, repeated


class AuthorizationServer:
    """The authorize/token logic over the portal database; see the module docstring."""

    def __init__(
        self,
        db: Database,
        issuer: TokenIssuer,
        config: OAuthConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.tokens = issuer
        self.config = config
        self._clock = clock

    # -- authorization endpoint --------------------------------------------------------------

    async def authorize(
        self, params: Sequence[tuple[str, str]], raw_query: str, user: Principal | None
    ) -> AuthorizeOutcome:
        """Decide what ``GET /oauth/authorize?<raw_query>`` does for ``user``."""
        query, repeated = _single(params)
        if {"client_id", "redirect_uri"} & repeated:
            return AuthorizeErrorPage(400, "invalid_request",
                                      "client_id and redirect_uri must each be given once.")
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri")
        if not client_id.isdigit():
            return AuthorizeErrorPage(
                400, "invalid_client",
                "This sign-in request does not name a registered Remote Technician relay "
                "(client_id). Start the session again from the portal.")
        if not redirect_uri:
            return AuthorizeErrorPage(
                400, "invalid_request",
                "This sign-in request has no redirect_uri. Start the session again from the "
                "portal.")
        async with self.db.transaction() as session:
            session_id = _session_id_of(redirect_uri)
            row = await session.get(RemoteSession, session_id) if session_id else None
            if (row is None or row.relay_id is None or row.relay_id != int(client_id)
                    or not redirect_uri_matches(redirect_uri, row.redirect_uri)):
                return AuthorizeErrorPage(
                    400, "invalid_request",
                    "The redirect_uri of this sign-in request is not the one registered for "
                    "any Remote Technician session of this relay, so the portal will not send "
                    "you there. Start the session again from the portal.")
            if user is None:
                return AuthorizeLogin(f"{AUTHORIZE_PATH}?{raw_query}")
            state = query.get("state")
            if not state or "state" in repeated:
                return AuthorizeErrorPage(
                    400, "invalid_request",
                    "The sign-in request has no state parameter (it protects you against "
                    "cross-site request forgery). Start the session again from the portal.")
            try:
                if repeated:
                    raise OAuthError("invalid_request",
                                     f"parameters given more than once: {sorted(repeated)}")
                if query.get("response_type") != "code":
                    raise OAuthError("unsupported_response_type",
                                     "only response_type=code is supported")
                challenge = check_challenge(query.get("code_challenge"),
                                            query.get("code_challenge_method"))
                now = self._clock()
                if row.user_id != user.user_id:
                    raise OAuthError(
                        "access_denied",
                        "this Remote Technician session belongs to another user; start your "
                        "own session from the portal")
                if row.status not in _LIVE or row.expires_at <= now:
                    raise OAuthError(
                        "access_denied",
                        "this Remote Technician session has ended; start a new one from the "
                        "portal")
            except OAuthError as exc:
                return AuthorizeRedirect(self._respond(row.redirect_uri, {
                    "error": exc.error, "error_description": exc.description, "state": state}))
            code = secrets.token_urlsafe(32)
            session.add(AuthorizationCode(
                code_hash=_code_hash(code), relay_id=row.relay_id, session_id=row.id,
                user_id=user.user_id, redirect_uri=row.redirect_uri, code_challenge=challenge,
                created_at=now, expires_at=now + timedelta(seconds=self.config.code_ttl_seconds),
            ))
        return AuthorizeRedirect(self._respond(row.redirect_uri, {"code": code, "state": state}))

    def _respond(self, redirect_uri: str, params: dict[str, str]) -> str:
        params = {**params, "iss": self.config.issuer}  # RFC 9207: mix-up defence
        joiner = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{joiner}{urlencode(params)}"

    # -- token endpoint ----------------------------------------------------------------------

    async def token(
        self, params: Sequence[tuple[str, str]], authorization: str | None
    ) -> TokenReply:
        """Answer ``POST /oauth/token`` with form ``params`` and the Authorization header."""
        try:
            return await self._token(params, authorization)
        except OAuthError as exc:
            headers = {}
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="ewsgate-oauth"'
            return TokenReply(exc.status, exc.as_json(), headers)

    async def _token(
        self, params: Sequence[tuple[str, str]], authorization: str | None
    ) -> TokenReply:
        form, repeated = _single(params)
        if "client_secret" in form:
            raise OAuthError("invalid_client",
                             "send the relay's credentials with HTTP Basic authentication "
                             "(client_secret_basic), not in the request body", status=401)
        credentials = parse_basic_auth(authorization)
        if credentials is None:
            raise OAuthError("invalid_client",
                             "client authentication required: HTTP Basic with the relay id "
                             "and secret that `ewsgate admin create-relay` printed", status=401)
        client_id, secret = credentials
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id in the body differs from the "
                             "authenticated client")
        if repeated:
            raise OAuthError("invalid_request",
                             f"parameters given more than once: {sorted(repeated)}")
        async with self.db.transaction() as session:
            relay = await authenticate_relay(session, client_id, secret)
            if relay is None:
                raise OAuthError("invalid_client", "unknown relay or wrong relay secret",
                                 status=401)
            grant = form.get("grant_type")
            if grant != "authorization_code":
                raise OAuthError("unsupported_grant_type",
                                 f"grant_type {grant!r} is not supported; only "
                                 "authorization_code (with PKCE) is")
            code = form.get("code")
            if not code:
                raise OAuthError("invalid_request", "code is required")
            return await self._redeem(session, relay.id, code, form)

    async def _redeem(
        self, session: AsyncSession, relay_id: int, code: str, form: dict[str, str]
    ) -> TokenReply:
        now = self._clock()
        digest = _code_hash(code)
        consumed = await session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest,
                   AuthorizationCode.redeemed_at.is_(None))
            .values(redeemed_at=now))
        row = await session.get(AuthorizationCode, digest, populate_existing=True)
        if row is None:
            return _grant_error("the authorization code is unknown")
        if consumed.rowcount != 1:  # type: ignore[attr-defined]
            # A reuse: refuse, and revoke what the first redemption obtained. If it obtained a
            # token, end the session too: the relay turned that token into its own cookie,
            # which only the session's end invalidates (the sweeper then finishes the job and
            # sends CloseSession).
            await session.execute(
                update(AuthorizationCode)
                .where(AuthorizationCode.code_hash == digest,
                       AuthorizationCode.revoked_at.is_(None))
                .values(revoked_at=now))
            if row.token_jti is not None:
                await session.execute(
                    update(RemoteSession)
                    .where(RemoteSession.id == row.session_id, RemoteSession.status.in_(_LIVE))
                    .values(status="ended", ended_at=now, reason=REUSE_REASON))
            return _grant_error("the authorization code was already used; the access token "
                                "issued for it is revoked and the session is ended")
        # From here on the code is spent whatever happens (it commits with this transaction).
        if row.relay_id != relay_id:
            return _grant_error("the authorization code was issued to another client")
        if row.expires_at <= now:
            return _grant_error("the authorization code has expired (codes live "
                                f"{self.config.code_ttl_seconds} s)")
        if not redirect_uri_matches(form.get("redirect_uri"), row.redirect_uri):
            return _grant_error("redirect_uri differs from the one in the authorization request")
        try:
            check_verifier(form.get("code_verifier"), row.code_challenge)
        except OAuthError as exc:
            return TokenReply(400, exc.as_json(), _NO_STORE)
        remote = await session.get(RemoteSession, row.session_id)
        user = await session.get(User, row.user_id)
        if (remote is None or user is None or not user.active
                or remote.user_id != row.user_id or remote.status not in _LIVE
                or remote.expires_at <= now):
            return _grant_error("the Remote Technician session has ended or changed hands")
        issued = self.tokens.access_token(
            relay_id=str(relay_id), user_id=str(user.id), email=user.email,
            session_id=remote.id, session_expires_at=remote.expires_at,
            ttl_seconds=self.config.access_token_ttl_seconds)
        row.token_jti = issued.jti
        row.token_expires_at = issued.expires_at
        body: dict[str, object] = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": max(0, int((issued.expires_at - now).total_seconds())),
        }
        return TokenReply(200, body, _NO_STORE)

    # -- what relays read, housekeeping -----------------------------------------------------

    async def revoked_token_ids(self, session: AsyncSession, session_id: str) -> list[str]:
        """The ``jti`` of every access token of ``session_id`` revoked by a code reuse."""
        rows = await session.execute(
            select(AuthorizationCode.token_jti).where(
                AuthorizationCode.session_id == session_id,
                AuthorizationCode.revoked_at.is_not(None),
                AuthorizationCode.token_jti.is_not(None)))
        return sorted(jti for (jti,) in rows if jti)

    async def prune(self) -> int:
        """Delete code rows whose code and token have both expired; return how many."""
        now = self._clock()
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(AuthorizationCode).where(
                    AuthorizationCode.expires_at <= now,
                    or_(AuthorizationCode.token_expires_at.is_(None),
                        and_(AuthorizationCode.token_expires_at.is_not(None),
                             AuthorizationCode.token_expires_at <= now))))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _grant_error(description: str) -> TokenReply:
    return TokenReply(400, OAuthError("invalid_grant", description).as_json(), _NO_STORE)
