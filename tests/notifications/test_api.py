"""REST: customer contacts (validated, secret shown once and sealed at rest) and the outbox
list for administrators (``status=failed``), each from the position of someone not allowed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from ewsgate.portal.notifications.outbox import notify
from ewsgate.portal.store.models import Notification
from sessions.rt_http import Portal

pytestmark = pytest.mark.db


def _contacts_url(portal: Portal, customer: str = "A") -> str:
    return f"/api/v1/customers/{portal.world.customer[customer]}/contacts"


async def test_webhook_secret_is_shown_once_and_stored_sealed(portal: Portal) -> None:
    token = await portal.token("admin")
    headers = {"Authorization": f"Bearer {token}"}
    async with portal.client() as client:
        put = await client.put(_contacts_url(portal), headers=headers, json={
            "emails": ["Sec@Customer-A.example", "sec@customer-a.example", "it@a.example"],
            "webhook_url": "https://hooks.customer-a.example/ewsgate"})
        assert put.status_code == 200, put.text
        assert put.headers["cache-control"] == "no-store"
        body = put.json()
        secret = body["webhook_secret"]
        assert secret.startswith("whsec_")
        assert body["emails"] == ["sec@customer-a.example", "it@a.example"]
        got = (await client.get(_contacts_url(portal), headers=headers)).json()
        assert "webhook_secret" not in got and got["webhook_secret_set"] is True
        # changing the e-mails keeps the secret; rotating makes a new one, shown once
        again = (await client.put(_contacts_url(portal), headers=headers,
                                  json={"emails": []})).json()
        assert "webhook_secret" not in again and again["emails"] == []
        rotated = (await client.put(_contacts_url(portal), headers=headers,
                                    json={"rotate_secret": True})).json()
        assert rotated["webhook_secret"] not in (None, secret)
    async with portal.world.db.transaction() as s:
        raw = (await s.execute(text("SELECT webhook_secret FROM customer_contacts"))).scalar_one()
    assert rotated["webhook_secret"] not in raw and secret not in raw
    async with portal.world.db.transaction() as s:
        from ewsgate.portal.store.models import AuditEvent

        trail = list((await s.scalars(select(AuditEvent).where(
            AuditEvent.action == "customer.contacts_update").order_by(AuditEvent.id))).all())
    assert len(trail) == 3 and trail[0].after_state is not None
    assert trail[0].after_state["webhook_url"] == "https://hooks.customer-a.example/ewsgate"
    assert all(secret not in str(e.after_state) and rotated["webhook_secret"]
               not in str(e.after_state) for e in trail)
    assert trail[2].after_state == {"webhook_secret": "[redacted]"}  # changed, never shown


@pytest.mark.parametrize(("body", "field"), [
    ({"webhook_url": "http://hooks.example/x"}, "webhook_url"),
    ({"webhook_url": "https://user:pw@hooks.example/x"}, "webhook_url"),
    ({"webhook_url": "https://hooks.example:0/x"}, "webhook_url"),
    ({"emails": ["not-an-address"]}, "emails"),
    ({"emails": [f"u{i}@example.com" for i in range(21)]}, "emails"),
    ({"rotate_secret": True}, "rotate_secret"),
])
async def test_bad_contacts_are_refused_with_the_field(portal: Portal, body: dict[str, object],
                                                       field: str) -> None:
    headers = {"Authorization": f"Bearer {await portal.token('admin')}"}
    async with portal.client() as client:
        response = await client.put(_contacts_url(portal), headers=headers, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"]


async def test_only_an_administrator_of_the_customer_changes_contacts(portal: Portal) -> None:
    async with portal.client() as client:
        viewer = {"Authorization": f"Bearer {await portal.token('viewer')}"}
        assert (await client.get(_contacts_url(portal), headers=viewer)).status_code == 200
        refused = await client.put(_contacts_url(portal), headers=viewer,
                                   json={"emails": ["attacker@evil.example"]})
        assert refused.status_code == 403
        other = {"Authorization": f"Bearer {await portal.token('adminB')}"}
        assert (await client.get(_contacts_url(portal), headers=other)).status_code == 404
        hidden = await client.put(_contacts_url(portal), headers=other,
                                  json={"emails": ["attacker@evil.example"]})
        assert hidden.status_code == 404
        # a cookie session without the CSRF token is refused too
        csrf = await portal.sign_in(client, "admin")
        assert csrf
        no_csrf = await client.put(_contacts_url(portal), json={"emails": ["x@example.com"]})
        assert no_csrf.status_code == 403
    async with portal.world.db.transaction() as s:
        assert (await s.execute(text("SELECT count(*) FROM customer_contacts"))).scalar_one() == 0


async def test_failed_notifications_are_listed_for_administrators_in_scope(
        portal: Portal) -> None:
    world = portal.world
    async with world.db.transaction() as s:
        from ewsgate.portal.store.models import CustomerContacts

        for key in ("A", "B"):
            s.add(CustomerContacts(customer_id=world.customer[key],
                                   emails=[f"sec@{key.lower()}.example"],
                                   updated_at=world.clock()))
        await s.flush()
        for key in ("A", "B"):
            await notify(s, "session_started", dealer_id=world.dealer,
                         customer_id=world.customer[key], data={"device_name": "P"},
                         now=world.clock())
        rows = list((await s.scalars(select(Notification).order_by(Notification.id))).all())
        rows[0].status, rows[0].last_error, rows[0].attempts = "failed", "refused: 550", 8
    async with portal.client() as client:
        admin = {"Authorization": f"Bearer {await portal.token('admin')}"}
        failed = (await client.get("/api/v1/notifications?status=failed",
                                   headers=admin)).json()
        assert [(n["target"], n["last_error"]) for n in failed] == [("sec@a.example",
                                                                     "refused: 550")]
        assert len((await client.get("/api/v1/notifications", headers=admin)).json()) == 2
        summary = (await client.get("/api/v1/notifications/summary", headers=admin)).json()
        assert summary == {"pending": 1, "sending": 0, "delivered": 0, "failed": 1}
        bad = await client.get("/api/v1/notifications?status=lost", headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
        admin_b = {"Authorization": f"Bearer {await portal.token('adminB')}"}
        seen_b = (await client.get("/api/v1/notifications", headers=admin_b)).json()
        assert [n["target"] for n in seen_b] == ["sec@b.example"]
        assert (await client.post(f"/api/v1/notifications/{failed[0]['id']}/retry",
                                  headers=admin_b)).status_code == 404
        tech = {"Authorization": f"Bearer {await portal.token('tech')}"}
        assert (await client.get("/api/v1/notifications", headers=tech)).json() == []
        assert (await client.get("/api/v1/notifications/summary", headers=admin_b)).json()[
            "failed"] == 0
        retried = await client.post(f"/api/v1/notifications/{failed[0]['id']}/retry",
                                    headers=admin)
        assert retried.status_code == 200 and retried.json()["status"] == "pending"
        again = await client.post(f"/api/v1/notifications/{failed[0]['id']}/retry",
                                  headers=admin)
        assert again.status_code == 409
