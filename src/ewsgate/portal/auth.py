"""Authentication for the portal: passwords, web sessions, personal API tokens, login limits.

* **Passwords** are argon2id hashes (argon2-cffi's RFC 9106 defaults); a login for an unknown
  e-mail still spends one hash so that timing does not reveal which accounts exist.
* **Web sessions** (the UI's cookie, also accepted by the API): the cookie holds 256 random bits;
  the database holds only their SHA-256 (``web_sessions.token_hash``), the expiry, the last use
  and a per-session CSRF secret. A session ends at ``expires_at`` (absolute lifetime) or after
  ``idle_timeout`` without use, whichever comes first; logout deletes the row.
* **CSRF**: every state-changing request authenticated by the cookie must carry the session's
  CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``), compared in constant time.
  Bearer-token requests need none (a browser never attaches them by itself).
  Expired rows are purged at each login (:func:`purge_expired_sessions`).
* **API tokens** (``Authorization: Bearer ewst_...``): 256 random bits, stored as SHA-256,
  shown once. SHA-256 (not argon2) is right here: the tokens are random, not guessable.
* **Login failure limiting**: a :class:`LoginLimiter` counts failures per e-mail and per client
  address in a sliding window and refuses further attempts for a while (HTTP 429 with
  Retry-After). The portal uses :class:`~ewsgate.portal.login_limits.SharedLoginLimiter`, whose
  failures live in the database, so every replica counts the same failures;
  :class:`LoginRateLimiter` is the same rule in one process's memory (tests, tools).

Every function takes the clock as an argument, so expiry is tested with a fake clock.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Actor, actor_for
from ewsgate.portal.services.credentials import (
    dummy_password_hash,
    hash_password,
    hash_secret,
    needs_rehash,
    new_secret,
    verify_password,
)
from ewsgate.portal.services.errors import AuthenticationFailed, RateLimited
from ewsgate.portal.services.users import API_TOKEN_PREFIX
from ewsgate.portal.sessions.revocation import end_user_sessions
from ewsgate.portal.store.models import ApiToken, User, WebSession
from ewsgate.portal.store.types import Clock, utc_now

__all__ = [
    "API_TOKEN_PREFIX",
    "AuthSettings",
    "LoginAttempt",
    "LoginLimiter",
    "LoginRateLimiter",
    "LoginResult",
    "SessionInfo",
    "actor_from_bearer",
    "check_csrf",
    "hash_password",
    "hash_secret",
    "login",
    "logout",
    "new_secret",
    "purge_expired_sessions",
    "session_from_cookie",
    "verify_password",
]




#: ``last_seen_at`` / ``last_used_at`` are refreshed at most this often (saves a write per request)
_TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Web-session and login-limit settings (part of the portal's frozen config)."""

    session_lifetime: timedelta = timedelta(hours=12)
    idle_timeout: timedelta = timedelta(hours=2)
    #: Secure cookie with the ``__Host-`` prefix; on whenever the portal is served over HTTPS
    cookie_secure: bool = False
    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    #: failures from one client address (many e-mails) before it is locked out too
    max_failures_per_address: int = 50

    @property
    def cookie_name(self) -> str:
        return "__Host-ewsgate_session" if self.cookie_secure else "ewsgate_session"


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A login attempt a limiter let through: its keys and, when stored, its rows."""

    keys: tuple[str, ...]
    row_ids: tuple[int, ...] = ()


class LoginLimiter(Protocol):
    """What :func:`login` needs of a limiter (in memory, or shared through the database)."""

    async def begin(self, keys: list[str]) -> LoginAttempt:
        """Raise :class:`RateLimited` if a key is locked out, else start an attempt."""

    async def failed(self, attempt: LoginAttempt) -> None:
        """The attempt's password was wrong."""

    async def succeeded(self, attempt: LoginAttempt, email_key: str) -> None:
        """The attempt logged in: the e-mail's failures are forgotten."""


class LoginRateLimiter:
    """Sliding-window failure counter per key (``email:...``, ``addr:...``).

    After ``limit`` failures within ``window`` the key is refused until ``lockout`` has passed
    since the last failure. At most ``max_keys`` keys are tracked (oldest dropped first), so an
    attacker cycling through e-mails cannot exhaust memory.
    """

    def __init__(self, settings: AuthSettings, *, clock: Clock = utc_now,
                 max_keys: int = 100_000) -> None:
        self._settings = settings
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def _limit(self, key: str) -> int:
        s = self._settings
        return s.max_failures_per_address if key.startswith("addr:") else s.max_failures

    def check(self, keys: list[str]) -> None:
        """Raise :class:`RateLimited` if any key is locked out."""
        now = self._clock()
        for key in keys:
            times = self._failures.get(key)
            limit = self._limit(key)
            if not times or len(times) < limit:
                continue
            burst = times[-1] - times[-limit] <= self._settings.failure_window
            wait = self._settings.lockout - (now - times[-1])
            if burst and wait > timedelta(0):
                retry = max(1, int(wait.total_seconds()) + 1)
                raise RateLimited(f"too many failed logins; try again in {retry} seconds",
                                  retry_after=retry)

    def record_failure(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            times = self._failures.pop(key, deque())
            times.append(now)
            while len(times) > self._limit(key):
                times.popleft()
            self._failures[key] = times
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    async def begin(self, keys: list[str]) -> LoginAttempt:
        self.check(keys)
        return LoginAttempt(tuple(keys))

    async def failed(self, attempt: LoginAttempt) -> None:
        self.record_failure(list(attempt.keys))

    async def succeeded(self, attempt: LoginAttempt, email_key: str) -> None:
        self.reset(email_key)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the web layer needs about the current web session."""

    id: int
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: ``cookie_value`` goes into the cookie (never stored)."""

    cookie_value: str
    actor: Actor
    session: SessionInfo


async def login(session: AsyncSession, email: str, password: str, *, settings: AuthSettings,
                limiter: LoginLimiter, clock: Clock = utc_now, client_ip: str | None = None,
                user_agent: str | None = None) -> LoginResult:
    """Check e-mail and password and start a web session.

    Raises :class:`RateLimited` (too many recent failures for this e-mail or address) or
    :class:`AuthenticationFailed` ``invalid_credentials`` (wrong e-mail or password, or an
    inactive user; the message does not say which).
    """
    email_key = "email:" + (email or "").strip().lower()
    keys = [email_key] + ([f"addr:{client_ip}"] if client_ip else [])
    attempt = await limiter.begin(keys)
    user = await session.scalar(select(User).where(User.email == (email or "").strip().lower()))
    ok = verify_password(user.password_hash if user else dummy_password_hash(), password or "")
    if user is None or not ok or not user.active:
        await limiter.failed(attempt)
        raise AuthenticationFailed("wrong e-mail or password", code="invalid_credentials")
    await limiter.succeeded(attempt, email_key)
    await purge_expired_sessions(session, settings=settings, clock=clock)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    now = clock()
    cookie_value = new_secret()
    record = WebSession(token_hash=hash_secret(cookie_value), user_id=user.id,
                        csrf_secret=new_secret(), created_at=now, last_seen_at=now,
                        expires_at=now + settings.session_lifetime,
                        user_agent=(user_agent or "")[:400] or None,
                        client_ip=(client_ip or "")[:64] or None)
    session.add(record)
    await session.flush()
    actor = await actor_for(session, user, via="session")
    await audit.record(session, "auth.sign_in", actor=actor, target_id=user.id,
                       detail=f"web session {record.id}", clock=clock)
    return LoginResult(cookie_value, actor,
                       SessionInfo(record.id, record.csrf_secret, record.expires_at))


async def session_from_cookie(session: AsyncSession, cookie_value: str | None, *,
                              settings: AuthSettings,
                              clock: Clock = utc_now) -> tuple[Actor, SessionInfo]:
    """The actor of a session cookie; refreshes ``last_seen_at``.

    Raises :class:`AuthenticationFailed` with code ``not_authenticated`` (no or unknown
    cookie) or ``session_expired`` (past its lifetime or idle timeout; purged at the next login).
    """
    if not cookie_value:
        raise AuthenticationFailed("log in first", code="not_authenticated")
    record = await session.scalar(
        select(WebSession).where(WebSession.token_hash == hash_secret(cookie_value)))
    if record is None:
        raise AuthenticationFailed("your session is not valid; log in again",
                                   code="not_authenticated")
    now = clock()
    if _expired(record, settings, now):
        raise AuthenticationFailed("your session has expired; log in again",
                                   code="session_expired")
    user = await session.get(User, record.user_id)
    if user is None or not user.active:
        raise AuthenticationFailed("your account is disabled", code="not_authenticated")
    if now - record.last_seen_at >= _TOUCH_EVERY:  # not a write on every request
        record.last_seen_at = now
    actor = await actor_for(session, user, via="session")
    return actor, SessionInfo(record.id, record.csrf_secret, record.expires_at)


def _expired(record: WebSession, settings: AuthSettings, now: datetime) -> bool:
    return record.expires_at <= now or now - record.last_seen_at >= settings.idle_timeout


async def purge_expired_sessions(session: AsyncSession, *, settings: AuthSettings,
                                 clock: Clock = utc_now) -> int:
    """Delete web sessions past their lifetime or idle timeout; returns how many.
    Called at each login, so the table stays small without a separate job."""
    now = clock()
    result = await session.execute(delete(WebSession).where(
        (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - settings.idle_timeout)))
    return int(getattr(result, "rowcount", 0) or 0)


async def logout(session: AsyncSession, cookie_value: str | None, *,
                 clock: Clock = utc_now) -> None:
    """End the web session of ``cookie_value`` (no error if there is none), and with it the
    user's live Remote Technician sessions: signing out of the portal signs out everywhere."""
    if cookie_value:
        digest = hash_secret(cookie_value)
        record = await session.scalar(select(WebSession).where(WebSession.token_hash == digest))
        user = await session.get(User, record.user_id) if record is not None else None
        if record is not None and user is not None:
            await audit.record(session, "auth.sign_out", actor=audit.Principal(
                "user", str(user.id), user.email), target_id=user.id, dealer_id=user.dealer_id,
                detail=f"web session {record.id}", clock=clock)
        await session.execute(delete(WebSession).where(WebSession.token_hash == digest))
        if record is not None:
            await end_user_sessions(session, record.user_id, "the user signed out of the portal",
                                    clock())


def check_csrf(info: SessionInfo, presented: str | None) -> bool:
    """Whether ``presented`` is this session's CSRF token (constant-time)."""
    return bool(presented) and hmac.compare_digest(info.csrf_token.encode(),
                                                   (presented or "").encode())


async def actor_from_bearer(session: AsyncSession, token: str | None, *,
                            clock: Clock = utc_now) -> Actor:
    """The actor of a bearer token; records ``last_used_at``.

    Unknown tokens and inactive users → :class:`AuthenticationFailed` ``invalid_token``.
    """
    if not token:
        raise AuthenticationFailed("missing bearer token", code="not_authenticated")
    record = await session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_secret(token.strip())))
    user = await session.get(User, record.user_id) if record is not None else None
    if record is None or user is None or not user.active:
        raise AuthenticationFailed("the API token is not valid; create a new one",
                                   code="invalid_token")
    now = clock()
    if record.last_used_at is None or now - record.last_used_at >= _TOUCH_EVERY:
        record.last_used_at = now
    return await actor_for(session, user, via="token")
