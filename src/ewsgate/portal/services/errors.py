"""The service layer's errors: each carries a stable ``code``, an HTTP status hint and a message
for a person (what happened and what to do).

The REST API turns them into ``{"error": {"code", "message", "field"?}}`` with ``status``; the
web UI shows ``message`` next to ``field``. Out-of-scope objects raise :class:`NotFound`, the same
error as a missing one, so that nobody learns what exists outside their scope.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServiceError",
]


class ServiceError(Exception):
    """Base class: ``code`` (stable, machine-readable), ``status`` (HTTP hint), ``message``."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: the input field at fault, when there is one (``"ip"``, ``"parent_id"``, ...)
        self.field = field


class NotFound(ServiceError):
    """The object does not exist, or is outside the caller's scope (indistinguishable)."""

    code = "not_found"
    status = 404

    @classmethod
    def of(cls, kind: str, ident: object) -> NotFound:
        return cls(f"{kind} {ident} does not exist or is not visible to you", code="not_found")


class PermissionDenied(ServiceError):
    """The caller can see the object but their roles do not allow this action."""

    code = "forbidden"
    status = 403


class InvalidInput(ServiceError):
    """A value is malformed or out of range; ``field`` names it."""

    code = "invalid_input"
    status = 422


class Conflict(ServiceError):
    """The request clashes with the current state (duplicate e-mail, non-empty customer...)."""

    code = "conflict"
    status = 409


class AuthenticationFailed(ServiceError):
    """No valid credentials (wrong password, expired session, unknown token)."""

    code = "unauthenticated"
    status = 401


class RateLimited(ServiceError):
    """Too many failures; ``retry_after`` seconds until the next attempt is accepted."""

    code = "too_many_attempts"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
