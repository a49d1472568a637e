"""The login failure limiter holds across two portal replicas sharing one database.

Replica A and replica B are two portal applications, each with its own database engine (as two
processes would have), on the same database; the attacker spreads guesses over both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from portal_world import WORLD_NOW, WORLD_PASSWORD, World

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.store.db import Database

pytestmark = pytest.mark.db

BASE = "http://portal.test"


class Clock:
    def __init__(self) -> None:
        self.now = WORLD_NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def replicas(database_url: str, world: World,
                   clock: Clock) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    clients = []
    databases = [Database(database_url), Database(database_url)]
    try:
        for index, database in enumerate(databases):
            app = create_app(PortalConfig(database_url=database_url), database=database,
                             clock=clock)
            transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{index + 7}", 5000))
            clients.append(httpx.AsyncClient(transport=transport, base_url=BASE))
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.aclose()
        for database in databases:
            await database.dispose()


async def _login(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/api/v1/auth/login", json={"email": email,
                                                              "password": password})
    return response.status_code


async def test_failures_on_both_replicas_add_up_to_one_limit(replicas, world: World) -> None:
    a, b = replicas
    email = world.emails["viewer@A"]
    statuses = [await _login((a, b)[i % 2], email, "wrong guess") for i in range(5)]
    assert statuses == [401] * 5
    assert await _login(a, email, WORLD_PASSWORD) == 429
    assert await _login(b, email, WORLD_PASSWORD) == 429


async def test_a_concurrent_flood_over_both_replicas_gets_at_most_the_limit(
        replicas, world: World) -> None:
    """Reserving before checking: concurrent guesses cannot all slip past the count."""
    a, b = replicas
    email = world.emails["viewer@A"]
    statuses = await asyncio.gather(*(_login((a, b)[i % 2], email, f"guess {i}")
                                      for i in range(24)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= 5, statuses
    # the rest of the budget, guessed one at a time, adds up to exactly the limit
    failures = statuses.count(401)
    for i in range(10):
        status = await _login((a, b)[i % 2], email, "wrong guess")
        if status == 429:
            break
        assert status == 401
        failures += 1
    assert failures == 5
    assert await _login(b, email, WORLD_PASSWORD) == 429


async def test_a_success_on_one_replica_clears_the_count_on_the_other(
        replicas, world: World) -> None:
    a, b = replicas
    email = world.emails["viewer@A"]
    for _ in range(4):
        assert await _login(b, email, "wrong guess") == 401
    assert await _login(a, email, WORLD_PASSWORD) == 200
    for _ in range(5):
        assert await _login(b, email, "wrong guess") == 401
    assert await _login(a, email, WORLD_PASSWORD) == 429


async def test_the_lockout_ends_for_both_replicas(replicas, world: World, clock: Clock) -> None:
    a, b = replicas
    email = world.emails["viewer@A"]
    for _ in range(5):
        assert await _login(a, email, "wrong guess") == 401
    assert await _login(b, email, WORLD_PASSWORD) == 429
    clock.now = WORLD_NOW + timedelta(minutes=16)
    assert await _login(b, email, WORLD_PASSWORD) == 200
