"""An installation's site subnets on the portal: validation in the service layer, the REST
API's field, and the payloads that carry the list to the agent."""

from __future__ import annotations

import pytest
from portal_world import World

from ewsgate.portal.services import InvalidInput, PermissionDenied, actor_for, installations
from ewsgate.portal.services.access import Actor
from ewsgate.portal.services.device_identity import verify_payload
from ewsgate.portal.services.site_subnets import MAX_SITE_SUBNETS, clean_site_subnets
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, Installation, User

pytestmark = pytest.mark.db


async def _actor(db: Database, world: World, key: str) -> Actor:
    async with db.transaction() as s:
        user = await s.get(User, world.users[key])
        assert user is not None
        return await actor_for(s, user)


def test_clean_site_subnets_canonical_forms() -> None:
    assert clean_site_subnets("f", None) is None
    assert clean_site_subnets("f", "") is None
    assert clean_site_subnets("f", []) is None
    assert clean_site_subnets("f", "10.20.0.0/24, 10.20.8.0/22\n2001:DB8:5::/64") == [
        "10.20.0.0/24", "10.20.8.0/22", "2001:db8:5::/64"]
    assert clean_site_subnets("f", ["10.20.0.0/24", " 10.20.0.0/24 "]) == ["10.20.0.0/24"]


@pytest.mark.parametrize(("value", "words"), [
    ("10.20.0.5/24", "has host bits set; did you mean 10.20.0.0/24?"),
    ("printers", "is not a network"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("100.100.100.0/24", "carrier-grade NAT"),  # holds a cloud metadata endpoint
    ("224.0.0.0/8", "multicast"),
    ("fe80::/64", "link-local"),
    ("0.0.0.0/0", "every address, which is no limit"),
    (["10.20.0.0/24", 7], "must be a list of networks"),
    ({"net": "10.20.0.0/24"}, "must be a list of networks"),
    ([f"10.{i}.0.0/16" for i in range(MAX_SITE_SUBNETS + 1)], "at most 64"),
])
def test_clean_site_subnets_refuses_with_the_reason(value: object, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_site_subnets("site_subnets", value)
    assert caught.value.field == "site_subnets"
    assert words in str(caught.value), str(caught.value)


async def test_an_administrator_sets_and_clears_site_subnets(db: Database,
                                                             world: World) -> None:
    admin = await _actor(db, world, "admin")
    async with db.transaction() as s:
        await installations.update_installation(s, admin, world.installation["A"],
                                                {"site_subnets": "10.20.0.0/24 10.21.0.0/24"})
    async with db.transaction() as s:
        row = await s.get(Installation, world.installation["A"])
        assert row is not None and row.site_subnets == ["10.20.0.0/24", "10.21.0.0/24"]
        device = await s.get(Device, world.device["A"])
        assert device is not None
        assert verify_payload(device, site_subnets=row.site_subnets)["site_subnets"] == [
            "10.20.0.0/24", "10.21.0.0/24"]
    with pytest.raises(InvalidInput):
        async with db.transaction() as s:
            await installations.update_installation(s, admin, world.installation["A"],
                                                    {"site_subnets": ["10.20.0.1/24"]})
    async with db.transaction() as s:  # the refused change left the list as it was
        row = await s.get(Installation, world.installation["A"])
        assert row is not None and row.site_subnets == ["10.20.0.0/24", "10.21.0.0/24"]
        await installations.update_installation(s, admin, world.installation["A"],
                                                {"site_subnets": None})
    async with db.transaction() as s:
        row = await s.get(Installation, world.installation["A"])
        assert row is not None and row.site_subnets is None
        device = await s.get(Device, world.device["A"])
        assert device is not None and verify_payload(device)["site_subnets"] == []


async def test_create_with_site_subnets_and_only_administrators_change_them(
        db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    async with db.transaction() as s:
        created = await installations.create_installation(
            s, admin, {"customer_id": world.customer["A"], "name": "Site B2",
                       "site_subnets": ["192.168.40.0/24"]})
        assert created.site_subnets == ["192.168.40.0/24"]
    viewer = await _actor(db, world, "viewer@dealer")
    with pytest.raises(PermissionDenied):
        async with db.transaction() as s:
            await installations.update_installation(s, viewer, world.installation["A"],
                                                    {"site_subnets": ["10.0.0.0/8"]})


async def test_the_rest_api_sets_shows_and_refuses_site_subnets(db: Database,
                                                                world: World) -> None:
    import httpx

    from ewsgate.portal.app import create_app
    from ewsgate.portal.context import PortalConfig
    from ewsgate.portal.services import users

    async with db.transaction() as s:
        user = await s.get(User, world.users["admin"])
        assert user is not None
        issued = await users.create_api_token(s, await actor_for(s, user), "test")
    admin = {"Authorization": f"Bearer {issued.token}"}
    app = create_app(PortalConfig(database_url=db.url), database=db)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 5000))
    url = f"/api/v1/installations/{world.installation['A']}"
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as http:
        ok = await http.patch(url, headers=admin, json={"site_subnets": ["10.20.0.0/24"]})
        assert ok.status_code == 200, ok.text
        assert ok.json()["site_subnets"] == ["10.20.0.0/24"]
        assert (await http.get(url, headers=admin)).json()["site_subnets"] == ["10.20.0.0/24"]
        bad = await http.patch(url, headers=admin, json={"site_subnets": ["169.254.0.0/16"]})
        assert bad.status_code == 422, bad.text
        error = bad.json()["error"]
        assert error["field"] == "site_subnets" and "link-local" in error["message"], error
        cleared = await http.patch(url, headers=admin, json={"site_subnets": []})
        assert cleared.status_code == 200 and cleared.json()["site_subnets"] is None
