"""The notification pages: the contacts form (secret shown once) and the administrators'
outbox list, over the real app."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ewsgate.portal.notifications.outbox import notify
from ewsgate.portal.store.models import CustomerContacts, Notification
from sessions.rt_http import Portal

pytestmark = pytest.mark.db


async def test_contacts_form_saves_shows_the_secret_once_and_refuses_bad_input(
        portal: Portal) -> None:
    url = f"/customers/{portal.world.customer['A']}/contacts"
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "admin")
        page = await client.get(url)
        assert page.status_code == 200 and "Notification contacts" in page.text
        bad = await client.post(url, data={"csrf_token": csrf, "emails": "x@",
                                           "webhook_url": ""})
        assert bad.status_code == 422 and "is not an e-mail address" in bad.text
        saved = await client.post(url, data={
            "csrf_token": csrf, "emails": "sec@a.example\nit@a.example",
            "webhook_url": "https://hooks.a.example/rt"})
        assert saved.status_code == 200 and saved.headers["cache-control"] == "no-store"
        assert "shown only this once" in saved.text and "whsec_" in saved.text
        again = await client.get(url)
        assert "whsec_" not in again.text and "it@a.example" in again.text
        forged = await client.post(url, data={"csrf_token": "wrong", "emails": "evil@x.example",
                                              "webhook_url": ""})
        assert forged.status_code == 403
    async with portal.world.db.transaction() as s:
        row = await s.get(CustomerContacts, portal.world.customer["A"])
        assert row is not None and row.emails == ["sec@a.example", "it@a.example"]


async def test_viewer_sees_contacts_read_only(portal: Portal) -> None:
    url = f"/customers/{portal.world.customer['A']}/contacts"
    async with portal.client() as client:
        await portal.sign_in(client, "viewer")
        page = await client.get(url)
    assert page.status_code == 200 and "<form method=\"post\"" not in page.text.split(
        "contacts-heading")[1]


async def test_administrators_see_failed_notifications_and_retry_them(portal: Portal) -> None:
    world = portal.world
    async with world.db.transaction() as s:
        s.add(CustomerContacts(customer_id=world.customer["A"], emails=["sec@a.example"],
                               updated_at=world.clock()))
        await s.flush()
        [row] = await notify(s, "session_started", dealer_id=world.dealer,
                             customer_id=world.customer["A"], data={"device_name": "Printer"},
                             now=world.clock())
        row.status, row.last_error = "failed", "SMTP server mx:587 unreachable: refused"
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "admin")
        listed = await client.get("/notifications?status=failed")
        assert listed.status_code == 200
        assert "unreachable: refused" in listed.text and "sec@a.example" in listed.text
        assert "Failed (1)" in listed.text
        retried = await client.post(f"/notifications/{row.id}/retry",
                                    data={"csrf_token": csrf})
        assert retried.status_code == 303
    async with portal.client() as client:
        await portal.sign_in(client, "tech")
        assert (await client.get("/notifications")).status_code == 403
    async with world.db.transaction() as s:
        assert (await s.scalars(select(Notification.status))).one() == "pending"
