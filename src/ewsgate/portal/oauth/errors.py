"""OAuth 2.1 protocol errors: one exception, an RFC 6749 error code, and where it may be sent.

An :class:`OAuthError` carries the standard ``error`` code (``invalid_request``,
``invalid_grant``…), a description a person can act on, the HTTP status for the token endpoint,
and ``redirectable``: whether the authorization endpoint may send it back to the client's
redirect URI. Errors about the client or the redirect URI itself are never redirectable — the
authorization server must not redirect to a URI it has not verified (OAuth 2.1 §4.1.2.1) — and
are shown to the person as an error page instead.
"""

from __future__ import annotations

__all__ = ["OAuthError"]

# RFC 6749 §4.1.2.1 and §5.2 error codes this server emits.
_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "unsupported_response_type",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }
)


class OAuthError(Exception):
    """A refused OAuth request: ``error`` is the RFC 6749 code, ``description`` says what to do."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        redirectable: bool = True,
    ) -> None:
        if error not in _CODES:
            raise ValueError(f"unknown OAuth error code {error!r}")
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.redirectable = redirectable

    def as_json(self) -> dict[str, str]:
        """The token endpoint's JSON error body (RFC 6749 §5.2)."""
        return {"error": self.error, "error_description": self.description}
