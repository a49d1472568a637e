"""Logins, web sessions (expiry by a fake clock), CSRF, API tokens and the failure limiter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_world import WORLD_NOW, WORLD_PASSWORD, World
from sqlalchemy import select

from ewsgate.portal import auth
from ewsgate.portal.services import AuthenticationFailed, RateLimited, users
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import ApiToken, User, WebSession

pytestmark = pytest.mark.db


class Clock:
    def __init__(self) -> None:
        self.now = WORLD_NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


SETTINGS = auth.AuthSettings(session_lifetime=timedelta(hours=8),
                             idle_timeout=timedelta(hours=1), max_failures=3,
                             failure_window=timedelta(minutes=10),
                             lockout=timedelta(minutes=5))


async def _login(db: Database, limiter: auth.LoginRateLimiter, clock: Clock, email: str,
                 password: str) -> auth.LoginResult:
    async with db.transaction() as s:
        return await auth.login(s, email, password, settings=SETTINGS, limiter=limiter,
                                clock=clock, client_ip="192.0.2.1", user_agent="pytest")


async def test_login_starts_a_session_stored_hashed(db: Database, world: World) -> None:
    clock = Clock()
    limiter = auth.LoginRateLimiter(SETTINGS, clock=clock)
    result = await _login(db, limiter, clock, world.emails["viewer@A"].upper(), WORLD_PASSWORD)
    assert result.actor.user_id == world.users["viewer@A"]
    assert result.actor.roles() == {"viewer"}
    async with db.transaction() as s:
        row = await s.scalar(select(WebSession))
        assert row is not None and row.token_hash == auth.hash_secret(result.cookie_value)
        assert result.cookie_value not in (row.token_hash, row.csrf_secret)
        assert row.expires_at == WORLD_NOW + timedelta(hours=8)
        actor, info = await auth.session_from_cookie(s, result.cookie_value,
                                                     settings=SETTINGS, clock=clock)
    assert actor.user_id == world.users["viewer@A"]
    assert auth.check_csrf(info, result.session.csrf_token)
    assert not auth.check_csrf(info, "forged") and not auth.check_csrf(info, None)


@pytest.mark.parametrize("password", ["wrong password", "", WORLD_PASSWORD.upper()])
async def test_wrong_password_is_refused_without_saying_which_part(
        db: Database, world: World, password: str) -> None:
    clock = Clock()
    limiter = auth.LoginRateLimiter(SETTINGS, clock=clock)
    with pytest.raises(AuthenticationFailed) as caught:
        await _login(db, limiter, clock, world.emails["viewer@A"], password)
    with pytest.raises(AuthenticationFailed) as unknown:
        await _login(db, limiter, clock, "nobody-here@example.com", password)
    assert caught.value.code == unknown.value.code == "invalid_credentials"
    assert caught.value.message == unknown.value.message


async def test_inactive_user_cannot_log_in(db: Database, world: World) -> None:
    clock = Clock()
    async with db.transaction() as s:
        user = await s.get(User, world.users["viewer@A"])
        assert user is not None
        user.active = False
    with pytest.raises(AuthenticationFailed):
        await _login(db, auth.LoginRateLimiter(SETTINGS, clock=clock), clock,
                     world.emails["viewer@A"], WORLD_PASSWORD)


async def test_failures_lock_the_login_out_for_a_while(db: Database, world: World) -> None:
    clock = Clock()
    limiter = auth.LoginRateLimiter(SETTINGS, clock=clock)
    email = world.emails["viewer@A"]
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await _login(db, limiter, clock, email, "wrong password")
        clock.now += timedelta(seconds=10)
    with pytest.raises(RateLimited) as locked:  # even the right password now
        await _login(db, limiter, clock, email, WORLD_PASSWORD)
    assert 0 < locked.value.retry_after <= 300 and locked.value.status == 429
    other = await _login(db, limiter, clock, world.emails["viewer@dealer"], WORLD_PASSWORD)
    assert other.actor.user_id == world.users["viewer@dealer"]
    clock.now += timedelta(minutes=5)
    assert (await _login(db, limiter, clock, email, WORLD_PASSWORD)).actor.email == email


def test_limiter_forgets_failures_spread_over_time() -> None:
    clock = Clock()
    limiter = auth.LoginRateLimiter(SETTINGS, clock=clock)
    for _ in range(10):
        limiter.record_failure(["email:a"])
        clock.now += timedelta(minutes=6)  # 3 failures never fall within 10 minutes... twice
        limiter.check(["email:a"])


def test_limiter_tracks_a_bounded_number_of_keys() -> None:
    limiter = auth.LoginRateLimiter(SETTINGS, clock=Clock(), max_keys=100)
    for i in range(1000):
        limiter.record_failure([f"email:{i}"])
    assert len(limiter._failures) == 100


@pytest.mark.parametrize(("advance", "why"), [(timedelta(hours=1), "idle"),
                                              (timedelta(hours=8), "lifetime")])
async def test_expired_session_is_refused_and_deleted(db: Database, world: World,
                                                      advance: timedelta, why: str) -> None:
    clock = Clock()
    result = await _login(db, auth.LoginRateLimiter(SETTINGS, clock=clock), clock,
                          world.emails["viewer@A"], WORLD_PASSWORD)
    if why == "lifetime":  # stay active so only the absolute lifetime ends it
        for _ in range(8):
            clock.now += timedelta(minutes=59)
            async with db.transaction() as s:
                await auth.session_from_cookie(s, result.cookie_value, settings=SETTINGS,
                                               clock=clock)
        clock.now = WORLD_NOW + advance
    else:
        clock.now += advance
    with pytest.raises(AuthenticationFailed) as caught:
        async with db.transaction() as s:
            await auth.session_from_cookie(s, result.cookie_value, settings=SETTINGS,
                                           clock=clock)
    assert caught.value.code == "session_expired"
    async with db.transaction() as s:
        assert await auth.purge_expired_sessions(s, settings=SETTINGS, clock=clock) == 1
        assert await s.scalar(select(WebSession)) is None


async def test_logout_ends_the_session(db: Database, world: World) -> None:
    clock = Clock()
    result = await _login(db, auth.LoginRateLimiter(SETTINGS, clock=clock), clock,
                          world.emails["viewer@A"], WORLD_PASSWORD)
    async with db.transaction() as s:
        await auth.logout(s, result.cookie_value)
    with pytest.raises(AuthenticationFailed) as caught:
        async with db.transaction() as s:
            await auth.session_from_cookie(s, result.cookie_value, settings=SETTINGS,
                                           clock=clock)
    assert caught.value.code == "not_authenticated"


async def test_api_tokens_are_stored_hashed_and_can_be_revoked(db: Database,
                                                               world: World) -> None:
    clock = Clock()
    async with db.transaction() as s:
        user = await s.get(User, world.users["configurer@A"])
        assert user is not None
        actor = await actor_for(s, user)
        issued = await users.create_api_token(s, actor, "ci", clock=clock)
    assert issued.token.startswith("ewst_") and len(issued.token) > 40
    async with db.transaction() as s:
        via_token = await auth.actor_from_bearer(s, issued.token, clock=clock)
        row = await s.scalar(select(ApiToken))
        assert row is not None and row.token_hash == auth.hash_secret(issued.token)
        assert row.last_used_at == WORLD_NOW
    assert via_token.via == "token" and via_token.roles() == {"configurer"}
    async with db.transaction() as s:
        await users.delete_api_token(s, actor, issued.record.id)
    for token in (issued.token, "ewst_unknown", ""):
        with pytest.raises(AuthenticationFailed):
            async with db.transaction() as s:
                await auth.actor_from_bearer(s, token, clock=clock)
