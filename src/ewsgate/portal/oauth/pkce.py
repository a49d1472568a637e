"""PKCE (RFC 7636) as OAuth 2.1 and RFC 9700 require it: S256 only, checked at both ends.

Theory of operation: the authorization endpoint accepts a request only with a well-formed
``code_challenge`` (43 to 128 characters of the unreserved set, RFC 7636 §4.2) and
``code_challenge_method=S256``; a missing method is *not* defaulted to ``plain`` as RFC 7636
allows, because OAuth 2.1 makes S256 mandatory and ``plain`` gives no protection against a
leaked authorization request. The challenge is stored with the code. The token endpoint then
requires a verifier of the same syntax whose ``BASE64URL(SHA256(verifier))`` equals the stored
challenge, compared in constant time. A verifier presented for a code stored without a
challenge is refused (the PKCE downgrade of RFC 9700 §4.8); with this server that cannot
happen, but the check stays so the rule holds even if an old row lacks a challenge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ewsgate.portal.oauth.errors import OAuthError

__all__ = ["S256", "check_challenge", "check_verifier", "s256_challenge"]

S256 = "S256"

# RFC 7636 §4.1/§4.2: 43*128 unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_PKCE_TEXT = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(verifier)))`` without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """Validate an authorization request's PKCE parameters; return the challenge to store."""
    if not challenge:
        raise OAuthError(
            "invalid_request",
            "code_challenge is required (PKCE with S256); the client must send "
            "code_challenge=BASE64URL(SHA256(code_verifier)) and code_challenge_method=S256",
        )
    if method != S256:
        shown = "missing" if not method else repr(method)
        raise OAuthError(
            "invalid_request",
            f"code_challenge_method {shown} is not supported; only S256 is accepted",
        )
    if not _PKCE_TEXT.fullmatch(challenge):
        raise OAuthError(
            "invalid_request",
            "code_challenge is malformed: it must be 43 to 128 characters of "
            "A-Z a-z 0-9 - . _ ~ (an S256 challenge is 43)",
        )
    return challenge


def check_verifier(verifier: str | None, stored_challenge: str | None) -> None:
    """Check a token request's ``code_verifier`` against the challenge stored with the code."""
    if not stored_challenge:
        raise OAuthError(
            "invalid_grant",
            "this code was issued without a PKCE challenge, so no code_verifier is accepted",
        )
    if not verifier:
        raise OAuthError("invalid_request", "code_verifier is required")
    if not _PKCE_TEXT.fullmatch(verifier):
        raise OAuthError(
            "invalid_grant",
            "code_verifier is malformed: it must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        )
    if not hmac.compare_digest(s256_challenge(verifier), stored_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
