"""The login failure limiter shared by every portal replica: failures live in the database.

A login attempt is *reserved* before the password is checked, in its own committed
transaction (``login_failures``, one row per key: ``email:<address>`` and ``addr:<client>``);
then the attempt counts the other rows of each key. Only when fewer than the limit are recent
does the password check run. A failure keeps its rows; a success deletes them and clears the
e-mail's failures; a refused attempt deletes its own rows (being refused is not a failure)::

    reserve rows ──commit──▶ count other recent rows ─┬─ ≥ limit ─▶ delete mine, 429
                                                      └─ < limit ─▶ check password
                                                                     ├─ wrong ─▶ keep rows
                                                                     └─ right ─▶ delete mine and
                                                                                 the e-mail's

Counting after committing is what makes the limit hold across replicas and concurrent
requests: an attempt that committed k-th sees at least k-1 other rows, so at most ``limit``
attempts per window reach the password check whichever replicas they hit. Under a flood the
count can only err towards refusing.

The rule is the one the in-memory :class:`~ewsgate.portal.auth.LoginRateLimiter` applies: after
``limit`` failures within ``failure_window`` a key is refused until ``lockout`` has passed since
the newest. Rows older than ``failure_window + lockout`` are deleted as failures are written.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select

from ewsgate.portal.auth import AuthSettings, LoginAttempt
from ewsgate.portal.services.errors import RateLimited
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import LoginFailure
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["SharedLoginLimiter"]

_KEY_CHARS = 400


class SharedLoginLimiter:
    """Database-backed login limiter (see the module docstring); one per portal process."""

    def __init__(self, database: Database, settings: AuthSettings, *,
                 clock: Clock = utc_now) -> None:
        self._db = database
        self._settings = settings
        self._clock = clock

    def _limit(self, key: str) -> int:
        s = self._settings
        return s.max_failures_per_address if key.startswith("addr:") else s.max_failures

    async def begin(self, keys: list[str]) -> LoginAttempt:
        """Reserve an attempt; raise :class:`RateLimited` if any key is locked out."""
        now = self._clock()
        keys = [key[:_KEY_CHARS] for key in keys]
        async with self._db.transaction() as session:
            ids = []
            for key in keys:
                result = await session.execute(
                    insert(LoginFailure).values(key=key, failed_at=now)
                    .returning(LoginFailure.id))
                ids.append(int(result.scalar_one()))
        attempt = LoginAttempt(tuple(keys), tuple(ids))
        horizon = now - self._settings.failure_window - self._settings.lockout
        wait = timedelta(0)
        async with self._db.transaction() as session:
            for key in keys:
                limit = self._limit(key)
                times = list((await session.scalars(
                    select(LoginFailure.failed_at)
                    .where(LoginFailure.key == key, LoginFailure.failed_at > horizon,
                           LoginFailure.id.not_in(ids))
                    .order_by(LoginFailure.failed_at.desc(), LoginFailure.id.desc())
                    .limit(limit))).all())
                if len(times) < limit or times[0] - times[-1] > self._settings.failure_window:
                    continue
                wait = max(wait, self._settings.lockout - (now - times[0]))
        if wait > timedelta(0):
            await self._forget(attempt)
            retry = max(1, int(wait.total_seconds()) + 1)
            raise RateLimited(f"too many failed logins; try again in {retry} seconds",
                              retry_after=retry)
        return attempt

    async def failed(self, attempt: LoginAttempt) -> None:
        """The password was wrong: the reserved rows stay, as failures; old rows go."""
        cutoff = self._clock() - self._settings.failure_window - self._settings.lockout
        async with self._db.transaction() as session:
            await session.execute(delete(LoginFailure).where(LoginFailure.failed_at < cutoff))

    async def succeeded(self, attempt: LoginAttempt, email_key: str) -> None:
        """The login worked: forget the attempt and the e-mail's earlier failures."""
        async with self._db.transaction() as session:
            await session.execute(delete(LoginFailure).where(
                LoginFailure.id.in_(attempt.row_ids)))
            await session.execute(delete(LoginFailure).where(
                LoginFailure.key == email_key[:_KEY_CHARS]))

    async def _forget(self, attempt: LoginAttempt) -> None:
        async with self._db.transaction() as session:
            await session.execute(delete(LoginFailure).where(
                LoginFailure.id.in_(attempt.row_ids)))
