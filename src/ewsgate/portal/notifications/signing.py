"""The webhook signature, sans-I/O.

The header is ``X-Ewsgate-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256 with the customer's webhook secret over ``"<t>." + body``. Signing the timestamp
with the body lets a receiver refuse a replayed delivery (older than its tolerance, 5 minutes
by :func:`verify`'s default) without keeping state; the ``v1`` tag leaves room for a second
scheme during a migration (a receiver accepts the header if any ``v1`` matches).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["SIGNATURE_HEADER", "SignatureError", "new_secret", "sign", "signature_header",
           "verify"]

SIGNATURE_HEADER = "X-Ewsgate-Signature"
_PREFIX = "whsec_"


class SignatureError(ValueError):
    """A signature header that does not verify; the message says why."""


def new_secret() -> str:
    """A fresh webhook secret (256 bits, URL-safe, prefixed so people recognise it)."""
    return _PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},v1={sign(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> int:
    """Check ``header`` against ``body``; the signed timestamp, or :class:`SignatureError`."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"the signature's timestamp {value!r} is not a "
                                     "number") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("the signature header needs t=<unix> and v1=<hex>")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"the signature is {abs(now - timestamp)} s from now, more than "
                             f"the {tolerance} s tolerated (a replay, or a wrong clock)")
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no v1 signature matches the body (wrong secret or altered body)")
    return timestamp
