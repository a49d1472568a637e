"""Signing keys across two portal replicas with their own data directories, one database:
a key made or retired on one is published and used by the other."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import KeySet

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.oauth.tokens import verify_access_token
from ewsgate.portal.sessions.runtime import RemoteTechnician, remote_technician_of
from ewsgate.portal.store.db import Database

pytestmark = pytest.mark.db

ISSUER = "http://portal.test"


class Replica:
    def __init__(self, app, database: Database) -> None:  # type: ignore[no-untyped-def]
        self.rt: RemoteTechnician = remote_technician_of(app)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)
        self.database = database

    async def published(self) -> set[str]:
        response = await self.http.get("/.well-known/jwks.json")
        assert response.status_code == 200
        return {key["kid"] for key in response.json()["keys"]}


@pytest.fixture
async def replicas(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    made = []
    for name in ("a", "b"):
        database = Database(database_url)
        app = create_app(PortalConfig(database_url=database_url, data_dir=tmp_path / name,
                                      public_url=ISSUER), database=database)
        made.append(Replica(app, database))
    try:
        yield made[0], made[1]
    finally:
        for replica in made:
            await replica.http.aclose()
            await replica.database.dispose()


async def test_replicas_starting_on_one_database_share_the_first_key(replicas) -> None:
    a, b = replicas
    await a.rt.key_sync.sync()
    await b.rt.key_sync.sync()
    assert a.rt.keys.active.kid == b.rt.keys.active.kid
    assert await a.published() == await b.published() == {a.rt.keys.active.kid}


async def test_a_rotation_on_one_replica_is_published_and_used_by_the_other(replicas) -> None:
    a, b = replicas
    await a.rt.key_sync.sync()
    await b.rt.key_sync.sync()
    old = a.rt.keys.active.kid
    new = a.rt.keys.rotate().kid
    await a.rt.key_sync.sync()  # replica A's next sweeper tick
    # a relay meeting the new kid re-fetches the JWKS, from whichever replica it reaches
    assert await b.published() == {old, new}
    token = a.rt.issuer.access_token(relay_id="1", user_id="2", email="t@example.com",
                                     session_id="s" * 32,
                                     session_expires_at=a.rt.clock().replace(year=2100),
                                     ttl_seconds=600)
    jwks = (await b.http.get("/.well-known/jwks.json")).json()
    claims = verify_access_token(token.token, KeySet.import_key_set(jwks), issuer=ISSUER,
                                 audience="1", now=int(a.rt.clock().timestamp()))
    assert claims["sid"] == "s" * 32
    await b.rt.key_sync.sync()  # replica B's next sweeper tick: it signs with the new key
    assert b.rt.keys.active.kid == new


async def test_a_retirement_on_one_replica_unpublishes_the_key_on_the_other(replicas) -> None:
    a, b = replicas
    await a.rt.key_sync.sync()
    old = a.rt.keys.active.kid
    new = a.rt.keys.rotate().kid
    await a.rt.key_sync.sync()
    await b.rt.key_sync.sync()
    b.rt.keys.retire(old)
    await b.rt.key_sync.sync()
    assert await a.published() == {new}
    assert [k.kid for k in a.rt.keys.published()] == [new]


async def test_the_cli_rotation_reaches_every_replica(replicas, database_url: str,
                                                      tmp_path: Path) -> None:
    a, b = replicas
    await a.rt.key_sync.sync()
    await b.rt.key_sync.sync()
    old = a.rt.keys.active.kid
    operator = tmp_path / "operator"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", "admin", "signing-keys", "--data-dir", str(operator),
        "--database-url", database_url, "--rotate", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert len(await a.published()) == 2 and old in await b.published()
    await a.rt.key_sync.sync()
    await b.rt.key_sync.sync()
    assert a.rt.keys.active.kid == b.rt.keys.active.kid != old
