"""Signing the browser in on a session origin: OAuth 2.1 client (PKCE S256) and the relay cookie.

Theory of operation::

    browser ─GET /x──────────────▶ relay: no valid __Host-ewsgate_rt cookie
            ◀─302 portal/oauth/authorize?response_type=code&client_id=<relay id>
                 &redirect_uri=https://s-<id>.<domain>[:port]/.ewsgate/callback
                 &state=<S>&code_challenge=<S256(V)>&code_challenge_method=S256
                 + Set-Cookie __Host-ewsgate_st=<S>   (binds S to this browser)
            ... the portal signs the user in and checks they own the session ...
    browser ─GET /.ewsgate/callback?code=<C>&state=<S>&iss=<portal>──▶ relay
            relay: pending[S] popped (single use, ≤ 5 min, same session), cookie st == S,
                   iss == portal; POST portal/oauth/token (Basic relay-id:secret)
                   grant_type=authorization_code&code=C&redirect_uri=…&code_verifier=V
                   → access token (JWT, ES256): verified with the portal's JWKS —
                   typ at+jwt, iss, aud == relay id, sid == this session, exp, nbf
            ◀─303 /x + Set-Cookie __Host-ewsgate_rt=<relay-signed value> (expires with session)

- The **verifier** never leaves the relay: it is kept in memory keyed by ``state``, bound to the
  session, single-use and short-lived. Pending sign-ins are capped per session and
  rate-limited per client address, and nothing pending is ever evicted to make room
  (:mod:`.sign_in_limits`).
- The **session cookie** is the relay's own, not the portal's token: ``v1.<payload>.<mac>`` with
  payload ``{"sid", "sub", "email", "exp"}`` (base64url JSON) and an HMAC-SHA256 under a key in
  the relay's data directory. It is ``__Host-`` (Secure, Path=/, no Domain: host-only, so it
  never reaches another session's host), HttpOnly, SameSite=Lax, and expires with the session.
  A cookie for session A shown on session B's host fails the ``sid`` check.
- **Signing out** (``/.ewsgate/logout``, :meth:`BrowserAuth.sign_out`) records the moment per
  session; a cookie issued (``iat``, milliseconds) before it is refused from then on, so a copy
  of the cookie taken before the sign-out does not keep the session open.
- **Tokens in query strings are never read**: only the callback's ``code``/``state``/``iss``
  are, and only on the callback path.
- The return target is the path first asked for, stored server-side and re-checked to be a
  same-origin path, so the callback cannot be made into an open redirector.

The portal side of this contract is written down in ``docs/relay.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ewsgate.relay.clock import Clock
from ewsgate.relay.portal_sessions import SessionStatusSource
from ewsgate.relay.sign_in_limits import PendingSignIns

__all__ = [
    "CALLBACK_PATH",
    "SESSION_COOKIE",
    "STATE_COOKIE",
    "Authenticator",
    "BrowserAuth",
    "Identity",
    "KeySource",
    "OAuthClientConfig",
    "RelayResponse",
    "safe_target",
]

SESSION_COOKIE = "__Host-ewsgate_rt"
STATE_COOKIE = "__Host-ewsgate_st"
CALLBACK_PATH = "/.ewsgate/callback"
ACCESS_TOKEN_TYP = "ewsgate-access-token"
ACCESS_TOKEN_HEADER_TYP = "at+jwt"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid session cookie names."""

    session_id: str
    user_id: str
    email: str
    expires_at: float
    #: when the cookie was issued (epoch seconds); 0 for cookies without ``iat``
    issued_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RelayResponse:
    """A response the relay makes itself (redirects, pages), with what the log should say."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    outcome: str = "ok"
    detail: str | None = None
    user: str | None = None


class Authenticator(Protocol):
    """What the proxy asks of browser authentication."""

    def identify(self, session_id: str, cookie_header: bytes | None) -> Identity | None:
        """The identity a valid cookie for this session names, or None."""
        ...

    def begin(self, session_id: str, target: str, client: str | None = None) -> RelayResponse:
        """Start sign-in: the redirect to the portal, remembering ``target``; ``client`` is
        the browser's address (sign-ins are rate-limited per address)."""
        ...

    def sign_out(self, session_id: str) -> None:
        """End every browser's hold on the session: cookies issued until now are refused."""
        ...

    async def callback(self, session_id: str, target: str, cookie_header: bytes | None,
                       session_end: float) -> RelayResponse:
        """Finish sign-in at ``/.ewsgate/callback?…``: set the cookie and go back, or refuse."""
        ...


class KeySource(Protocol):
    """The portal's published signing keys (the same source the tunnel tickets are checked with,
    :class:`ewsgate.relay.tickets.JwksKeySource`)."""

    async def keys(self, refresh: bool = False) -> KeySet: ...


@dataclass(frozen=True)
class OAuthClientConfig:
    """The relay as an OAuth client of the portal."""

    #: the relay id (``client_id``, and the ``aud`` of the tokens it accepts)
    relay_id: str
    relay_secret: str
    #: the portal's public URL: the issuer (``iss``) and the base of the endpoints below
    portal_url: str
    #: key for the session cookie's HMAC (at least 32 bytes, kept in the data directory)
    cookie_key: bytes
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    jwks_uri: str = ""
    #: how long a started sign-in may take before its state is forgotten
    state_ttl: float = 300.0
    #: all pending sign-ins together (memory safety: a full table refuses, it never evicts)
    max_pending: int = 10_000
    #: pending sign-ins per session
    max_pending_per_session: int = 16
    #: sign-ins one client address (an IPv6 /64) may start per minute
    sign_ins_per_minute: int = 20

    def __post_init__(self) -> None:
        if len(self.cookie_key) < 32:
            raise ValueError("the cookie key must be at least 32 bytes")
        if not self.relay_id or not self.relay_secret:
            raise ValueError("relay id and secret are required (from `ewsgate admin "
                             "create-relay`)")
        base = self.portal_url.rstrip("/")
        object.__setattr__(self, "portal_url", base)
        if not self.authorization_endpoint:
            object.__setattr__(self, "authorization_endpoint", base + "/oauth/authorize")
        if not self.token_endpoint:
            object.__setattr__(self, "token_endpoint", base + "/oauth/token")
        if not self.jwks_uri:
            object.__setattr__(self, "jwks_uri", base + "/.well-known/jwks.json")


@dataclass(frozen=True, slots=True)
class _Pending:
    session_id: str
    verifier: str
    target: str
    created: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def safe_target(target: str) -> str:
    """A same-origin path (and query) to return to after sign-in; anything else becomes ``/``."""
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target) or len(target) > 4096
            or target.startswith("/.ewsgate/")):
        return "/"
    return target


def _cookies(cookie_header: bytes | None) -> dict[str, str]:
    if not cookie_header:
        return {}
    found: dict[str, str] = {}
    for part in cookie_header.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in found:
            found[name] = value.strip()
    return found


class BrowserAuth:
    """The relay's :class:`Authenticator`: OAuth 2.1 + PKCE against the portal, HMAC cookies."""

    def __init__(self, config: OAuthClientConfig, *, session_host: Any, clock: Clock,
                 keys: KeySource, http: httpx.AsyncClient,
                 sessions: SessionStatusSource | None = None) -> None:
        """``session_host(session_id)`` gives ``s-<id>.<domain>[:port]``; ``sessions``, when
        given, re-checks at sign-in that the session is live and owned by the token's user."""
        self.config = config
        self._sessions = sessions
        self._session_host = session_host
        self._clock = clock
        self._keys = keys
        self._http = http
        self._pending: PendingSignIns[_Pending] = PendingSignIns(
            clock, ttl=config.state_ttl, per_session=config.max_pending_per_session,
            per_client_per_minute=config.sign_ins_per_minute, max_total=config.max_pending)
        #: session id → when its browsers were signed out (cookies issued before are refused)
        self._signed_out: dict[str, float] = {}

    # -- the cookie ----------------------------------------------------------------------

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.config.cookie_key, b"ewsgate-rt-v1." + payload.encode("ascii"),
                          hashlib.sha256).digest()
        return _b64url(digest)

    def make_cookie_value(self, identity: Identity) -> str:
        payload = _b64url(json.dumps({
            "sid": identity.session_id, "sub": identity.user_id, "email": identity.email,
            "exp": int(identity.expires_at), "iat": int(identity.issued_at * 1000)},
            separators=(",", ":")).encode("utf-8"))
        return f"v1.{payload}.{self._mac(payload)}"

    def identify(self, session_id: str, cookie_header: bytes | None) -> Identity | None:
        value = _cookies(cookie_header).get(SESSION_COOKIE)
        if not value:
            return None
        version, _, rest = value.partition(".")
        payload, _, mac = rest.partition(".")
        if version != "v1" or not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(_b64url_decode(payload))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("sid") != session_id:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= self._clock.now():
            return None
        iat = claims.get("iat")
        issued_at = iat / 1000 if isinstance(iat, int) else 0.0
        signed_out = self._signed_out.get(session_id)
        if signed_out is not None and issued_at <= signed_out:
            return None
        return Identity(session_id=session_id, user_id=str(claims.get("sub")),
                        email=str(claims.get("email")), expires_at=float(exp),
                        issued_at=issued_at)

    def sign_out(self, session_id: str) -> None:
        now = self._clock.now()
        if len(self._signed_out) > 100_000:
            # a sign-out matters only while the session's cookies can live (30 minutes)
            for sid in [s for s, at in self._signed_out.items() if at < now - 3600]:
                del self._signed_out[sid]
        self._signed_out[session_id] = now

    # -- starting sign-in ----------------------------------------------------------------

    def redirect_uri(self, session_id: str) -> str:
        return f"https://{self._session_host(session_id)}{CALLBACK_PATH}"

    def begin(self, session_id: str, target: str, client: str | None = None) -> RelayResponse:
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        refused = self._pending.add(state, session_id, client, _Pending(
            session_id, verifier, safe_target(target), self._clock.now()))
        if refused is not None:
            from ewsgate.relay.session_pages import render

            page = render("sign_in_limited", portal_url=self.config.portal_url,
                          detail=refused.message)
            return RelayResponse(
                status=page.status, outcome="refused", detail=refused.code, body=page.body,
                headers=[(b"Content-Type", b"text/html; charset=utf-8"),
                         (b"Cache-Control", b"no-store"),
                         (b"Retry-After", str(refused.retry_after).encode("ascii"))])
        query = urlencode({
            "response_type": "code",
            "client_id": self.config.relay_id,
            "redirect_uri": self.redirect_uri(session_id),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        location = f"{self.config.authorization_endpoint}?{query}"
        state_cookie = (f"{STATE_COOKIE}={state}; Secure; HttpOnly; SameSite=Lax; Path=/; "
                        f"Max-Age={int(self.config.state_ttl)}")
        return RelayResponse(
            status=302, outcome="auth", detail="sign_in_started",
            headers=[(b"Location", location.encode("ascii")),
                     (b"Set-Cookie", state_cookie.encode("ascii")),
                     (b"Cache-Control", b"no-store")])

    # -- finishing sign-in ---------------------------------------------------------------

    def _refuse(self, code: str, message: str) -> RelayResponse:
        from ewsgate.relay.session_pages import render

        page = render("auth_failed", portal_url=self.config.portal_url, detail=message)
        return RelayResponse(
            status=page.status, outcome="refused", detail=code, body=page.body,
            headers=[(b"Content-Type", b"text/html; charset=utf-8"),
                     (b"Cache-Control", b"no-store")])

    async def callback(self, session_id: str, target: str, cookie_header: bytes | None,
                       session_end: float) -> RelayResponse:
        params = parse_qs(urlsplit(target).query, keep_blank_values=True)

        def one(name: str) -> str | None:
            values = params.get(name)
            return values[0] if values and len(values) == 1 else None

        state = one("state")
        item = self._pending.pop(state) if state else None
        pending = item[2] if item is not None else None
        if pending is None or pending.session_id != session_id:
            return self._refuse("unknown_state", "This sign-in link is unknown, used or "
                                "expired. Reload the device page to sign in again.")
        if self._clock.now() - pending.created >= self.config.state_ttl:
            return self._refuse("state_expired", "The sign-in took too long. Reload the device "
                                "page to sign in again.")
        browser_state = _cookies(cookie_header).get(STATE_COOKIE, "")
        if not hmac.compare_digest(browser_state.encode(), (state or "").encode()):
            return self._refuse("state_not_bound", "This sign-in was started in another "
                                "browser. Open the device page from the portal in this browser.")
        error = one("error")
        if error is not None:
            return self._refuse(f"portal_{error}"[:64], f"The portal refused the sign-in "
                                f"({error}): {one('error_description') or 'no details'}.")
        issuer = one("iss")
        if issuer is not None and issuer.rstrip("/") != self.config.portal_url:
            return self._refuse("wrong_issuer", "The sign-in answer came from another server.")
        code = one("code")
        if not code:
            return self._refuse("no_code", "The sign-in answer carried no code.")
        try:
            claims = await self._redeem(session_id, code, pending.verifier)
        except _AuthError as exc:
            return self._refuse(exc.code, str(exc))
        if self._sessions is not None:
            facts = await self._sessions.facts(session_id)
            # None: the portal could not be asked; its signed token already says the same
            if facts is not None and not facts.live:
                return self._refuse("session_not_live", "The portal says this session has "
                                    "ended. Start a new one from the portal.")
            if facts is not None and facts.user_id is not None and (
                    facts.user_id != str(claims["sub"])):
                return self._refuse("not_session_owner", "This session belongs to another "
                                    "user. Open the device from the portal to start your own.")
        expires_at = min(session_end, self._clock.now() + 30 * 60)
        identity = Identity(session_id=session_id, user_id=str(claims["sub"]),
                            email=str(claims.get("email") or claims["sub"]),
                            expires_at=expires_at, issued_at=self._clock.now())
        max_age = max(1, int(expires_at - self._clock.now()))
        cookie = (f"{SESSION_COOKIE}={self.make_cookie_value(identity)}; Secure; HttpOnly; "
                  f"SameSite=Lax; Path=/; Max-Age={max_age}")
        clear_state = f"{STATE_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"
        return RelayResponse(
            status=303, outcome="auth", detail="signed_in", user=identity.email,
            headers=[(b"Location", pending.target.encode("latin-1")),
                     (b"Set-Cookie", cookie.encode("ascii")),
                     (b"Set-Cookie", clear_state.encode("ascii")),
                     (b"Cache-Control", b"no-store")])

    async def _redeem(self, session_id: str, code: str, verifier: str) -> dict[str, Any]:
        try:
            response = await self._http.post(
                self.config.token_endpoint,
                data={"grant_type": "authorization_code", "code": code,
                      "redirect_uri": self.redirect_uri(session_id), "code_verifier": verifier},
                auth=(self.config.relay_id, self.config.relay_secret),
                headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _AuthError("token_endpoint_unreachable",
                             f"The portal could not be reached to finish sign-in: {exc}") from exc
        if response.status_code != 200:
            try:
                reason = response.json().get("error", "")
            except ValueError:
                reason = ""
            raise _AuthError("code_refused", f"The portal refused the sign-in code "
                             f"({response.status_code} {reason}). Reload to sign in again.")
        try:
            token = str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _AuthError("bad_token_response", "The portal's token answer was malformed.") \
                from exc
        return await self.verify_access_token(token, session_id)

    async def verify_access_token(self, token: str, session_id: str) -> dict[str, Any]:
        """Check an access token's signature (portal JWKS) and claims for this session."""
        try:
            keys = await self._keys.keys()
        except Exception as exc:  # the key source's own errors (network, JSON, TicketError)
            raise _AuthError("jwks_unavailable", f"The portal's keys could not be read: {exc}") \
                from exc
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=["ES256"])
            except JoseError:
                decoded = jwt.decode(token, await self._keys.keys(refresh=True),
                                     algorithms=["ES256"])
        except Exception as exc:
            raise _AuthError("bad_token_signature", "The access token's signature is not "
                             "the portal's.") from exc
        claims = dict(decoded.claims)
        now = self._clock.now()
        checks = [
            (decoded.header.get("typ") == ACCESS_TOKEN_HEADER_TYP, "wrong_token_type"),
            (claims.get("typ") == ACCESS_TOKEN_TYP, "wrong_token_type"),
            (str(claims.get("iss", "")).rstrip("/") == self.config.portal_url, "wrong_issuer"),
            (claims.get("aud") == self.config.relay_id
             or claims.get("aud") == [self.config.relay_id], "wrong_audience"),
            (claims.get("sid") == session_id, "wrong_session"),
            (isinstance(claims.get("exp"), int) and claims["exp"] > now, "token_expired"),
            (not isinstance(claims.get("nbf"), int) or claims["nbf"] <= now + 5,
             "token_not_yet_valid"),
            (bool(claims.get("sub")), "no_subject"),
        ]
        for ok, code in checks:
            if not ok:
                raise _AuthError(code, f"The access token was refused ({code}).")
        return claims


class _AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
