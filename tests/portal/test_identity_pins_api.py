"""REST: the device's identity pins and strength in its representation, reset by an
Administrator only (recorded), and the pin history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from portal_world import WORLD_NOW, World

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services import users
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, User

pytestmark = pytest.mark.db
FP = "ab" * 32


@pytest.fixture
async def client(db: Database, world: World) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(PortalConfig(database_url=db.url), database=db, clock=lambda: WORLD_NOW)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as http:
        yield http


async def _token(db: Database, world: World, key: str) -> dict[str, str]:
    async with db.transaction() as s:
        user = await s.get(User, world.users[key])
        assert user is not None
        issued = await users.create_api_token(s, await actor_for(s, user), "test")
    return {"Authorization": f"Bearer {issued.token}"}


async def test_device_shows_pins_and_a_weak_identity_warning(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    url = f"/api/v1/devices/{world.device['A']}"
    viewer = await _token(db, world, "viewer@A")
    body = (await client.get(url, headers=viewer)).json()
    assert body["identity_pins"] == {"ews_cert_sha256": None, "mac": None, "learned_at": None}
    assert body["identity_strength"]["level"] == "pending"  # HTTPS: pinned at first session
    async with db.transaction() as s:
        device = await s.get(Device, world.device["A"])
        assert device is not None
        device.ews_endpoints = [{"scheme": "http", "port": 80}]
    weak = (await client.get(url, headers=viewer)).json()["identity_strength"]
    assert weak["weak"] is True and weak["level"] == "weak"
    assert weak["message"].startswith("Weak identity")
    listed = (await client.get("/api/v1/devices", headers=viewer)).json()
    rows = listed["items"] if isinstance(listed, dict) else listed
    assert any(r["identity_strength"]["weak"] for r in rows)


async def test_only_an_administrator_resets_pins_and_the_reset_is_in_the_history(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    async with db.transaction() as s:
        device = await s.get(Device, world.device["A"])
        assert device is not None
        device.pin_ews_cert_sha256, device.pin_mac = FP, "00:1b:a9:00:00:01"
    url = f"/api/v1/devices/{world.device['A']}/identity-pins"
    for key in ("viewer@A", "user@A", "configurer@A"):
        response = await client.delete(url, headers=await _token(db, world, key))
        assert response.status_code == 403, (key, response.text)
    hidden = await client.delete(f"/api/v1/devices/{world.device['X']}/identity-pins",
                                 headers=await _token(db, world, "admin"))
    assert hidden.status_code == 404
    response = await client.delete(url, headers=await _token(db, world, "admin"))
    assert response.status_code == 200, response.text
    assert response.json()["identity_pins"]["ews_cert_sha256"] is None
    events = (await client.get(f"{url}/events",
                               headers=await _token(db, world, "viewer@A"))).json()
    assert [e["action"] for e in events] == ["reset"]
    assert events[0]["old_ews_cert_sha256"] == FP
    assert events[0]["user_email"] == world.emails["admin"]
