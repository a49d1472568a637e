"""Web UI through an ASGI client: administration of users, roles, customers, installations."""

from __future__ import annotations

import re

import httpx
import pytest

from .ui_world import csrf_of, sign_in

pytestmark = pytest.mark.db


async def test_admin_creates_a_user_with_a_role(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": "new.tech@example.com", "name": "New Tech",
        "password": "long enough pw", "role": "configurer",
        "customer_id": str(seeded.customer["warehouse"])})
    assert response.status_code == 303
    detail = await client.get(response.headers["location"])
    assert "New Tech" in detail.text
    assert "Remote Technician Configurer" in detail.text
    assert "Acme Logistics \u203a Warehouse" in detail.text


async def test_duplicate_email_is_shown_with_its_field_and_nothing_is_written(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": seeded.email["viewer"], "name": "Dup",
        "password": "long enough pw", "role": "viewer", "customer_id": ""})
    assert response.status_code == 409
    assert 'aria-invalid="true"' in response.text and 'id="email-error"' in response.text
    assert 'value="Dup"' in response.text  # the form keeps what was typed...
    assert "long enough pw" not in response.text  # ...except the password


async def test_refused_role_leaves_no_half_created_user(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": "half@example.com", "name": "Half",
        "password": "long enough pw", "role": "overlord", "customer_id": ""})
    assert response.status_code == 422
    assert "role" in response.text.lower()
    listing = await client.get("/users")
    assert "half@example.com" not in listing.text


async def test_admin_gives_and_removes_a_role(client, seeded):
    await sign_in(client, seeded.email["admin"])
    user = seeded.user["viewer"]
    page = await client.get(f"/users/{user}")
    response = await client.post(f"/users/{user}/roles", data={
        "csrf_token": csrf_of(page.text), "role": "user",
        "customer_id": str(seeded.customer["bluebell"])})
    assert response.status_code == 303
    page = await client.get(f"/users/{user}")
    assert "Remote Technician User" in page.text
    removal = re.findall(rf'action="/users/{user}/roles/(\d+)/delete"', page.text)
    assert len(removal) == 2
    for assignment in removal:
        response = await client.post(f"/users/{user}/roles/{assignment}/delete",
                                     data={"csrf_token": csrf_of(page.text)})
        assert response.status_code == 303
    page = await client.get(f"/users/{user}")
    assert "This user has no role" in page.text


async def test_installation_created_with_a_one_time_enrolment_command(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    response = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Branch office",
        "customer_id": str(seeded.customer["bluebell"])})
    assert response.status_code == 201
    assert "ewsgate agent enroll --portal 127.0.0.1:8001 --token ewse_" in response.text
    again = await client.get("/installations")
    assert "Branch office" in again.text and "--token ewse_" not in again.text


async def test_installation_without_customer_names_the_field(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    response = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Nowhere", "customer_id": ""})
    assert response.status_code == 422
    assert 'id="customer_id-error"' in response.text
    assert "Nowhere" not in (await client.get("/installations")).text.split("Add an")[0]


async def test_customers_page_shows_the_tree_and_creates_children(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/customers")
    assert re.search(r"Acme Logistics.*<ul>.*Warehouse", page.text, re.S)
    response = await client.post("/customers", data={
        "csrf_token": csrf_of(page.text), "name": "Acme Annex",
        "parent_id": str(seeded.customer["acme"])})
    assert response.status_code == 303
    assert "Acme Annex" in (await client.get("/customers")).text


async def test_viewer_sees_no_admin_forms(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    assert "Add an installation" not in (await client.get("/installations")).text
    assert "Add a customer" not in (await client.get("/customers")).text


async def test_moving_a_customer_below_its_own_child_is_refused_as_a_cycle(client, seeded):
    await sign_in(client, seeded.email["admin"])
    acme, warehouse = seeded.customer["acme"], seeded.customer["warehouse"]
    page = await client.get(f"/customers/{acme}")
    assert page.status_code == 200
    response = await client.post(f"/customers/{acme}", data={
        "csrf_token": csrf_of(page.text), "name": "Acme Logistics",
        "parent_id": str(warehouse)})
    assert response.status_code == 422
    assert 'id="parent_id-error"' in response.text and "cycle" in response.text
    tree = await client.get("/customers")
    assert re.search(r"Acme Logistics.*<ul>.*Warehouse", tree.text, re.S)


async def test_customer_rename_and_refused_delete_of_a_non_empty_one(client, seeded):
    await sign_in(client, seeded.email["admin"])
    bluebell = seeded.customer["bluebell"]
    page = await client.get(f"/customers/{bluebell}")
    renamed = await client.post(f"/customers/{bluebell}", data={
        "csrf_token": csrf_of(page.text), "name": "Bluebell Dental Group", "parent_id": ""})
    assert renamed.status_code == 303
    assert "Bluebell Dental Group" in (await client.get("/customers")).text
    refused = await client.post(f"/customers/{bluebell}/delete",
                                data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 409
    assert "installation" in refused.text


async def test_admin_deactivates_a_user_who_then_cannot_sign_in(client, seeded):
    await sign_in(client, seeded.email["admin"])
    viewer = seeded.user["viewer"]
    page = await client.get(f"/users/{viewer}")
    response = await client.post(f"/users/{viewer}", data={
        "csrf_token": csrf_of(page.text), "name": "Vera Viewer",
        "email": seeded.email["viewer"]})  # "active" unticked
    assert response.status_code == 303
    assert "Inactive" in (await client.get(f"/users/{viewer}")).text
    other = httpx.AsyncClient(transport=client._transport, base_url="http://portal.test")
    async with other:
        assert (await sign_in(other, seeded.email["viewer"])).status_code == 401


async def test_the_last_administrator_cannot_deactivate_themself(client, seeded):
    await sign_in(client, seeded.email["admin"])
    admin = seeded.user["admin"]
    page = await client.get(f"/users/{admin}")
    assert "Delete user" not in page.text  # not offered on one's own account
    response = await client.post(f"/users/{admin}", data={
        "csrf_token": csrf_of(page.text), "name": "Alice Admin",
        "email": seeded.email["admin"]})
    assert response.status_code == 409
    assert "last" in response.text and "administrator" in response.text


async def test_an_enrolled_installation_offers_a_certificate_replacement(client, seeded, ui_db):
    db = ui_db
    from sqlalchemy import select

    from ewsgate.portal.store.models import EnrolmentToken, Installation

    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    created = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Replaced office",
        "customer_id": str(seeded.customer["bluebell"])})
    assert created.status_code == 201
    async with db.transaction() as session:
        installation = await session.scalar(
            select(Installation).where(Installation.name == "Replaced office"))
        installation.cert_serial = "0a1b"
        installation_id = installation.id
    page = await client.get("/installations")
    assert "Replace certificate" in page.text
    plain = await client.post(f"/installations/{installation_id}/enrolment-token",
                              data={"csrf_token": csrf_of(page.text)})
    assert plain.status_code == 409 and "replace" in plain.text
    replaced = await client.post(f"/installations/{installation_id}/enrolment-token",
                                 data={"csrf_token": csrf_of(page.text), "purpose": "replace"})
    assert replaced.status_code == 201 and "replacement token" in replaced.text
    async with db.transaction() as session:
        tokens = (await session.scalars(select(EnrolmentToken).where(
            EnrolmentToken.installation_id == installation_id))).all()
    assert sorted(t.purpose for t in tokens) == ["enrol", "replace"]
    assert [t.purpose for t in tokens if t.revoked_at is None] == ["replace"]
