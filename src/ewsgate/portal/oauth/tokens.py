"""The JWTs the portal signs: relay access tokens and agent tunnel tickets.

Both are ES256 compact JWS signed with the active key of :class:`~.keys.SigningKeys`, and both
name a relay as their audience, so each carries an explicit type — in the header (``typ``, as
RFC 8725 §3.11 recommends) *and* as a ``typ`` claim — and a verifier must check it: a tunnel
ticket is never an access token and the other way round.

Access token (RFC 9068 profile, header ``typ: at+jwt``)::

    iss        the portal's public URL (the authorization server's issuer)
    aud        the relay id (the OAuth client and the resource server)
    client_id  the relay id
    sub        the portal user id (string)
    email      the user's e-mail, for the relay's log
    sid        the remote session id
    iat, nbf, exp   exp = min(now + access_token_ttl, session expires_at)
    jti        random, 128 bits; listed by the portal if revoked
    typ        "ewsgate-access-token"

Tunnel ticket (header ``typ: ewsgate-tunnel-ticket``)::

    iss, aud = relay id, sub = installation id, sid, iat, exp <= session expires_at, jti,
    typ = "ewsgate-tunnel-ticket",
    dev = {"ip", "hostname", "endpoints": [{"scheme", "port"}]}

:func:`verify_access_token` and :func:`verify_tunnel_ticket` are the matching checks (signature
by a published key, ``alg`` ES256 only, issuer, audience, type, expiry with no leeway beyond
``leeway`` seconds); they need only the JWKS, so a relay can use them without a database.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ewsgate.portal.oauth.keys import ALGORITHM, SigningKeys

__all__ = [
    "ACCESS_TOKEN_TYP",
    "TICKET_TYP",
    "IssuedToken",
    "TokenError",
    "TokenIssuer",
    "verify_access_token",
    "verify_tunnel_ticket",
]

ACCESS_TOKEN_TYP = "ewsgate-access-token"
ACCESS_TOKEN_HEADER_TYP = "at+jwt"
TICKET_TYP = "ewsgate-tunnel-ticket"


class TokenError(ValueError):
    """A token or ticket failed verification; ``code`` says which check."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and the facts the issuer keeps about it."""

    token: str
    jti: str
    expires_at: datetime
    issued_at: datetime


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


class TokenIssuer:
    """Signs access tokens and tunnel tickets for one issuer (the portal's public URL)."""

    def __init__(self, keys: SigningKeys, issuer: str, clock: Callable[[], datetime]) -> None:
        self.keys = keys
        self.issuer = issuer
        self._clock = clock

    def access_token(
        self,
        *,
        relay_id: str,
        user_id: str,
        email: str,
        session_id: str,
        session_expires_at: datetime,
        ttl_seconds: int,
    ) -> IssuedToken:
        """An access token for ``relay_id``, never outliving the session."""
        now = self._clock()
        exp = min(_ts(now) + ttl_seconds, _ts(session_expires_at))
        if exp <= _ts(now):
            raise ValueError("the session has expired; no token can be issued for it")
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self.issuer,
            "aud": relay_id,
            "client_id": relay_id,
            "sub": user_id,
            "email": email,
            "sid": session_id,
            "iat": _ts(now),
            "nbf": _ts(now),
            "exp": exp,
            "jti": jti,
            "typ": ACCESS_TOKEN_TYP,
        }
        token = self.keys.sign(claims, typ=ACCESS_TOKEN_HEADER_TYP)
        return IssuedToken(token, jti, datetime.fromtimestamp(exp, now.tzinfo), now)

    def tunnel_ticket(
        self,
        *,
        relay_id: str,
        installation_id: str,
        session_id: str,
        expires_at: datetime,
        device: Mapping[str, Any],
        certificate_thumbprint: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """The ticket the agent presents to ``relay_id`` for ``session_id``, bound to the
        installation's client certificate (``cnf``/``x5t#S256``, RFC 8705) when given; relays
        refuse tickets without that binding. ``policy`` (claim ``pol``: mode, idle seconds,
        panel) is what the relay enforces on every request."""
        now = self._clock()
        exp = _ts(expires_at)
        if exp <= _ts(now):
            raise ValueError("the session has expired; no ticket can be issued for it")
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self.issuer,
            "aud": relay_id,
            "sub": installation_id,
            "sid": session_id,
            "iat": _ts(now),
            "exp": exp,
            "jti": jti,
            "typ": TICKET_TYP,
            "dev": dict(device),
        }
        if certificate_thumbprint is not None:
            claims["cnf"] = {"x5t#S256": certificate_thumbprint}
        if policy is not None:
            claims["pol"] = dict(policy)
        token = self.keys.sign(claims, typ=TICKET_TYP)
        return IssuedToken(token, jti, datetime.fromtimestamp(exp, now.tzinfo), now)


def _verify(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str,
    typ: str,
    header_typ: str,
    now: int,
    leeway: int,
    required: Sequence[str],
) -> dict[str, Any]:
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise TokenError("bad_signature", f"token signature or format is invalid: {exc}") from exc
    if decoded.header.get("typ") != header_typ:
        raise TokenError("wrong_type", f"token header typ is not {header_typ!r}")
    claims = dict(decoded.claims)
    for name in required:
        if name not in claims:
            raise TokenError("missing_claim", f"token lacks the {name!r} claim")
    if claims.get("typ") != typ:
        raise TokenError("wrong_type", f"token typ claim is not {typ!r}")
    if claims.get("iss") != issuer:
        raise TokenError("wrong_issuer", f"token issuer is not {issuer!r}")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and aud == [audience]):
        raise TokenError("wrong_audience", f"token is not meant for {audience!r}")
    if not isinstance(claims.get("exp"), int) or claims["exp"] + leeway <= now:
        raise TokenError("expired", "token has expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int) and nbf - leeway > now:
        raise TokenError("not_yet_valid", "token is not valid yet")
    return claims


def verify_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int, leeway: int = 0
) -> dict[str, Any]:
    """Verify an access token for relay ``audience``; return its claims or raise TokenError."""
    return _verify(
        token, keys, issuer=issuer, audience=audience, typ=ACCESS_TOKEN_TYP,
        header_typ=ACCESS_TOKEN_HEADER_TYP, now=now, leeway=leeway,
        required=("iss", "aud", "sub", "sid", "exp", "iat", "jti", "email"),
    )


def verify_tunnel_ticket(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int, leeway: int = 0
) -> dict[str, Any]:
    """Verify a tunnel ticket for relay ``audience``; return its claims or raise TokenError."""
    return _verify(
        token, keys, issuer=issuer, audience=audience, typ=TICKET_TYP, header_typ=TICKET_TYP,
        now=now, leeway=leeway, required=("iss", "aud", "sub", "sid", "exp", "iat", "jti", "dev"),
    )
