"""Tunnel tickets at the relay: verify the JWT the agent presents, refuse replays.

An agent opens a tunnel with a HELLO whose credential is a small JSON object::

    {"ticket": "<JWT signed by the portal>", "gen": 1}

The ticket is an ES256 JWT from the portal (see :mod:`ewsgate.portal.oauth.tokens`): ``iss`` =
the portal URL, ``aud`` = this relay's id, ``sub`` = the installation id, ``sid`` = the session,
``exp`` <= the session's end, ``jti``, ``typ`` = ``ewsgate-tunnel-ticket`` and ``dev`` = the
verified device (ip, hostname, endpoints). The relay has no database: it checks the signature
with the portal's published JWKS (:class:`JwksKeySource`, cached, refetched once when a ticket
names an unknown key id).

Replays and reconnects. One ticket serves the whole session, so an agent whose connection
dropped reconnects with the same ticket and the next *connection generation* ``gen``. The relay
remembers, per ``jti`` and until the ticket's ``exp``, the highest generation admitted: a HELLO
with a generation not above it is a replay and is refused. A ticket alone is useless to a thief
anyway: the TLS client certificate must name the same installation (``sub``) and be the very
certificate the ticket is bound to (``cnf: {"x5t#S256": ...}``, RFC 8705: the SHA-256 of its
DER, compared with the certificate presented in the TLS handshake), and its private key never
leaves the agent. A ticket without that binding is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc.jwk import KeySet

from ewsgate.portal.oauth.tokens import TokenError, verify_tunnel_ticket
from ewsgate.relay.upstream import DeviceView, Endpoint
from ewsgate.textsafe import safe_text
from ewsgate.tunnel.credential import decode_credential, encode_credential
from ewsgate.tunnel.errors import RemoteProtocolError

__all__ = [
    "JwksKeySource",
    "KeySource",
    "StaticKeySource",
    "TicketError",
    "TicketVerifier",
    "TunnelTicket",
    "encode_credential",
    "parse_credential",
]

log = logging.getLogger(__name__)
_MAX_ENDPOINTS = 16


class TicketError(Exception):
    """The ticket (or the HELLO carrying it) is refused; ``code`` is stable, e.g. ``expired``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"tunnel ticket refused ({self.code}): {self.args[0]}"


@dataclass(frozen=True, slots=True)
class TunnelTicket:
    """A verified ticket: who may carry which session to which device, until when."""

    session_id: str
    installation_id: str
    relay_id: str
    jti: str
    issued_at: float
    expires_at: float
    device: DeviceView
    generation: int
    claims: dict[str, Any]
    #: ``x5t#S256`` of the client certificate the ticket is bound to (its ``cnf`` claim)
    certificate_thumbprint: str | None = None


class KeySource(Protocol):
    """Where the portal's public signing keys come from."""

    async def keys(self, refresh: bool = False) -> KeySet: ...


class StaticKeySource:
    """A fixed key set (tests, or a relay configured with the portal's JWKS file)."""

    def __init__(self, key_set: KeySet) -> None:
        self._keys = key_set

    async def keys(self, refresh: bool = False) -> KeySet:
        return self._keys


class JwksKeySource:
    """``{portal_url}/.well-known/jwks.json``, cached for ``max_age`` seconds."""

    def __init__(self, portal_url: str, *, max_age: float = 300.0,
                 fetch: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
                 clock: Callable[[], float] = time.monotonic, verify: Any = True) -> None:
        self.url = portal_url.rstrip("/") + "/.well-known/jwks.json"
        self._max_age = max_age
        self._fetch = fetch or self._http_fetch
        self._clock = clock
        self._verify = verify
        self._cached: KeySet | None = None
        self._fetched_at = 0.0

    async def _http_fetch(self, url: str) -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(timeout=10.0, verify=self._verify) as client:
            response = await client.get(url)
            response.raise_for_status()
            data = response.json()
        if not isinstance(data, dict):
            raise ValueError("JWKS is not a JSON object")
        return data

    async def keys(self, refresh: bool = False) -> KeySet:
        stale = self._clock() - self._fetched_at > self._max_age
        if self._cached is None or stale or (refresh and self._clock() - self._fetched_at > 5):
            try:
                self._cached = KeySet.import_key_set(await self._fetch(self.url))  # type: ignore[arg-type]
                self._fetched_at = self._clock()
            except Exception as exc:
                if self._cached is None:
                    raise TicketError("keys_unavailable", f"cannot fetch the portal's keys from "
                                      f"{self.url}: {exc}; check --portal-url") from exc
                log.warning("JWKS refresh from %s failed (%s); using cached keys", self.url,
                            safe_text(exc, limit=300))
        return self._cached


def _bound_thumbprint(claims: dict[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    value = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def parse_credential(credential: bytes) -> tuple[str, int]:
    """``(ticket, generation)`` from a HELLO credential, or :class:`TicketError`."""
    try:
        return decode_credential(credential)
    except RemoteProtocolError as exc:
        raise TicketError("malformed", exc.reason) from None


def device_from_claim(dev: Any) -> DeviceView:
    """Validate the ``dev`` claim: an IP literal and 1..16 endpoints of http/https and a port."""
    try:
        ip = str(ipaddress.ip_address(str(dev["ip"])))
        endpoints = tuple(Endpoint(str(item["scheme"]), int(item["port"]))
                          for item in dev["endpoints"])
        hostname = dev.get("hostname") or None
    except (KeyError, TypeError, ValueError) as exc:
        raise TicketError("bad_device", f"the ticket's dev claim is malformed: {exc}") from None
    if not 1 <= len(endpoints) <= _MAX_ENDPOINTS:
        raise TicketError("bad_device", f"the ticket names {len(endpoints)} endpoints; "
                          f"1 to {_MAX_ENDPOINTS} are allowed")
    return DeviceView(ip=ip, hostname=str(hostname) if hostname else None, endpoints=endpoints)


class TicketVerifier:
    """Checks tickets for one relay: signature, issuer, audience, type, expiry, binding, replay."""

    def __init__(self, *, relay_id: str, portal_url: str, keys: KeySource,
                 clock: Callable[[], float] = time.time, leeway: int = 0) -> None:
        self.relay_id = relay_id
        self.issuer = portal_url.rstrip("/")
        self._keys = keys
        self._clock = clock
        self._leeway = leeway
        #: jti -> (exp, highest admitted generation)
        self._seen: dict[str, tuple[float, int]] = {}

    async def verify(self, credential: bytes, *, installation_id: str | None,
                     certificate_thumbprint: str | None = None) -> TunnelTicket:
        """Verify a HELLO credential from a client whose certificate names ``installation_id``
        and has the ``x5t#S256`` ``certificate_thumbprint``."""
        token, generation = parse_credential(credential)
        now = self._clock()
        claims = await self._decode(token, int(now))
        if installation_id is None:
            raise TicketError("no_installation", "the client certificate names no installation")
        if str(claims["sub"]) != installation_id:
            raise TicketError("wrong_installation",
                              f"the ticket is for installation {claims['sub']}, the client "
                              f"certificate is installation {installation_id}")
        bound = _bound_thumbprint(claims)
        if bound is None:
            raise TicketError("unbound", "the ticket is not bound to a certificate (no cnf "
                              "x5t#S256 claim); the portal must be upgraded, or the agent must "
                              "reconnect its control stream so the portal records its "
                              "certificate, then start a new session")
        if certificate_thumbprint is None or not hmac.compare_digest(bound,
                                                                     certificate_thumbprint):
            raise TicketError("wrong_certificate",
                              "the ticket is bound to another certificate of installation "
                              f"{installation_id} (cnf x5t#S256 {bound[:10]}…, presented "
                              f"{(certificate_thumbprint or 'none')[:10]}…): a superseded or "
                              "copied certificate; start a new session from the portal")
        jti, exp = str(claims["jti"]), float(claims["exp"])
        self._prune(now)
        previous = self._seen.get(jti)
        if previous is not None and generation <= previous[1]:
            raise TicketError("replayed", f"ticket {jti[:8]}… was already used for connection "
                              f"generation {previous[1]}; a reconnect must use a higher one")
        device = device_from_claim(claims["dev"])
        self._seen[jti] = (exp, generation)
        return TunnelTicket(session_id=str(claims["sid"]), installation_id=installation_id,
                            relay_id=self.relay_id, jti=jti, issued_at=float(claims["iat"]),
                            expires_at=exp, device=device, generation=generation,
                            claims=claims, certificate_thumbprint=bound)

    async def _decode(self, token: str, now: int) -> dict[str, Any]:
        for attempt in (0, 1):
            keys = await self._keys.keys(refresh=attempt == 1)
            try:
                return verify_tunnel_ticket(token, keys, issuer=self.issuer,
                                            audience=self.relay_id, now=now,
                                            leeway=self._leeway)
            except TokenError as exc:
                if exc.code == "bad_signature" and attempt == 0:
                    continue  # maybe a key we do not know yet: refetch the JWKS once
                raise TicketError(exc.code, str(exc)) from None
        raise AssertionError("unreachable")

    def _prune(self, now: float) -> None:
        for jti in [j for j, (exp, _) in self._seen.items() if exp <= now]:
            del self._seen[jti]
