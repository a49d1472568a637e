"""HTTP Basic (RFC 7617) and Digest (RFC 7616) authentication, server side, without I/O.

:class:`HttpAuthenticator` issues the ``WWW-Authenticate`` challenges (Digest SHA-256, Digest
MD5, then Basic, in the order RFC 7616 section 3.7 recommends, strongest first) and checks an
``Authorization`` header. Digest uses ``qop=auth`` only; each nonce is remembered with the time it
was issued and the highest nonce-count seen, so a replayed or reordered ``nc`` is refused and an
old nonce gets ``stale=true`` (the browser then retries silently with the new nonce instead of
prompting again). The clock is injected, so expiry is tested without waiting.

No library fits: the Python HTTP servers have no Digest support and the client libraries only
implement the client half, so this ~150-line module is written by hand from the RFC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ewsgate.devicesim.state import Clock

__all__ = ["AuthResult", "HttpAuthenticator", "parse_digest_params"]

_ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}


@dataclass(frozen=True, slots=True)
class AuthResult:
    """``user`` when the credentials were good; ``stale`` when only the nonce was too old."""

    user: str | None
    scheme: str = ""
    stale: bool = False
    reason: str = ""


def parse_digest_params(text: str) -> dict[str, str]:
    """``a="x", b=y`` → dict; quoted values may contain commas and escaped quotes."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        start = i
        while i < n and text[i] not in "=, \t":
            i += 1
        name = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            if name:
                params[name] = ""
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
            params[name] = "".join(value)
        else:
            start = i
            while i < n and text[i] != ",":
                i += 1
            params[name] = text[start:i].strip()
    return params


class HttpAuthenticator:
    """Basic and Digest for one realm and a fixed set of users (``{user: password}``)."""

    def __init__(self, realm: str, users: dict[str, str], clock: Clock, *,
                 schemes: tuple[str, ...] = ("Digest-SHA-256", "Digest-MD5", "Basic"),
                 nonce_lifetime: float = 300.0, max_nonces: int = 1024) -> None:
        self.realm = realm
        self.users = dict(users)
        self.clock = clock
        self.schemes = schemes
        self.nonce_lifetime = nonce_lifetime
        self.max_nonces = max_nonces
        self.opaque = secrets.token_hex(16)
        #: nonce → [issued at (monotonic), highest nc seen]
        self._nonces: OrderedDict[str, list[float]] = OrderedDict()

    def _new_nonce(self) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = [self.clock.monotonic(), 0]
        while len(self._nonces) > self.max_nonces:
            self._nonces.popitem(last=False)
        return nonce

    def challenges(self, *, stale: bool = False) -> list[tuple[str, str]]:
        """The ``WWW-Authenticate`` headers of a 401 (one per offered scheme)."""
        headers = []
        for scheme in self.schemes:
            if scheme == "Basic":
                headers.append(("WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'))
                continue
            algorithm = scheme.removeprefix("Digest-")
            value = (f'Digest realm="{self.realm}", qop="auth", algorithm={algorithm}, '
                     f'nonce="{self._new_nonce()}", opaque="{self.opaque}"')
            if stale:
                value += ", stale=true"
            headers.append(("WWW-Authenticate", value))
        return headers

    def check(self, method: str, target: str, authorization: str | None) -> AuthResult:
        """Verify an ``Authorization`` header for a request (``method``, request-target)."""
        if not authorization:
            return AuthResult(None, reason="no credentials")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "basic" and "Basic" in self.schemes:
            return self._check_basic(rest.strip())
        if scheme.lower() == "digest" and any(s.startswith("Digest") for s in self.schemes):
            return self._check_digest(method, target, parse_digest_params(rest))
        return AuthResult(None, reason=f"scheme {scheme!r} is not offered")

    def _check_basic(self, token: str) -> AuthResult:
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(None, "Basic", reason="malformed Basic credentials")
        expected = self.users.get(user)
        if sep and expected is not None and hmac.compare_digest(password, expected):
            return AuthResult(user, "Basic")
        return AuthResult(None, "Basic", reason="wrong user name or password")

    def _check_digest(self, method: str, target: str, p: dict[str, str]) -> AuthResult:
        algorithm = p.get("algorithm", "MD5").upper()
        hash_function = _ALGORITHMS.get(algorithm)
        if hash_function is None or f"Digest-{algorithm}" not in self.schemes:
            return AuthResult(None, "Digest", reason=f"algorithm {algorithm} is not offered")
        user, nonce, uri, response = p.get("username"), p.get("nonce"), p.get("uri"), \
            p.get("response")
        if not (user and nonce and uri and response) or p.get("realm") != self.realm:
            return AuthResult(None, "Digest", reason="incomplete Digest credentials")
        if uri != target:
            return AuthResult(None, "Digest", reason="the Digest uri is not this request's")
        if p.get("qop") != "auth" or "cnonce" not in p or "nc" not in p:
            return AuthResult(None, "Digest", reason="qop=auth with cnonce and nc is required")
        try:
            nc = int(p["nc"], 16)
        except ValueError:
            return AuthResult(None, "Digest", reason="nc is not hexadecimal")
        password = self.users.get(user)
        if password is None:
            return AuthResult(None, "Digest", reason="wrong user name or password")

        def h(text: str) -> str:
            return hash_function(text.encode()).hexdigest()

        ha1 = h(f"{user}:{self.realm}:{password}")
        ha2 = h(f"{method}:{uri}")
        expected = h(f"{ha1}:{nonce}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        if not hmac.compare_digest(expected, response.lower()):
            return AuthResult(None, "Digest", reason="wrong user name or password")
        record = self._nonces.get(nonce)
        if record is None or self.clock.monotonic() - record[0] > self.nonce_lifetime:
            self._nonces.pop(nonce, None)
            return AuthResult(None, "Digest", stale=True, reason="nonce expired or unknown")
        if nc <= record[1]:
            return AuthResult(None, "Digest", reason="nonce count replayed")
        record[1] = nc
        return AuthResult(user, "Digest")
