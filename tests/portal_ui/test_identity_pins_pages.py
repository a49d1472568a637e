"""The device page: identity pins, the weak-identity warning, the Administrator's reset."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from ewsgate.portal.store.models import Device, DevicePinEvent

from .ui_world import csrf_of, sign_in

pytestmark = pytest.mark.db
FP = "ab" * 32


async def _set(ui_db, device_id, **values):  # type: ignore[no-untyped-def]
    async with ui_db.transaction() as s:
        device = await s.get(Device, device_id)
        for key, value in values.items():
            setattr(device, key, value)


async def test_a_v2c_plain_http_device_shows_the_weak_identity_warning(client, seeded, ui_db):
    device = seeded.device["reception"]
    await sign_in(client, seeded.email["viewer"])
    page = await client.get(f"/devices/{device}")
    assert 'id="weak-identity"' not in page.text  # HTTPS: a certificate pin is coming
    assert "pin on first session" in page.text
    await _set(ui_db, device, ews_endpoints=[{"scheme": "http", "port": 80}])
    page = await client.get(f"/devices/{device}")
    assert 'id="weak-identity"' in page.text and "Weak identity." in page.text
    assert "SNMPv3 authPriv (the strong option)" in page.text
    await _set(ui_db, device, snmp_version="3", snmp_v3_user="tech",
               snmp_v3_auth_key="authkey123", snmp_v3_priv_key="privkey123")
    page = await client.get(f"/devices/{device}")
    assert 'id="weak-identity"' not in page.text and "strong (SNMPv3 authPriv)" in page.text


async def test_pins_are_shown_and_only_an_administrator_resets_them(client, seeded, ui_db):
    device = seeded.device["reception"]
    await _set(ui_db, device, pin_ews_cert_sha256=FP, pin_mac="3c:52:82:00:00:00")
    await sign_in(client, seeded.email["tech"])
    page = await client.get(f"/devices/{device}")
    assert FP in page.text and "3c:52:82:00:00:00" in page.text and "two factors" in page.text
    assert 'id="reset-pins"' not in page.text
    refused = await client.post(f"/devices/{device}/identity-pins/reset",
                                data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 403

    async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as admin:
        await sign_in(admin, seeded.email["admin"])
        page = await admin.get(f"/devices/{device}")
        assert 'id="reset-pins"' in page.text
        response = await admin.post(f"/devices/{device}/identity-pins/reset",
                                    data={"csrf_token": csrf_of(page.text)})
        assert response.status_code == 303
        page = await admin.get(response.headers["location"])
    assert "identity pins were reset" in page.text
    assert FP not in page.text.split('id="pin-cert"')[1].split("</dd>")[0]
    assert f"by {seeded.email['admin']}" in page.text  # the history names who reset
    async with ui_db.transaction() as s:
        [event] = (await s.scalars(select(DevicePinEvent))).all()
    assert event.action == "reset" and event.old_ews_cert_sha256 == FP


async def test_the_device_form_names_snmpv3_auth_priv_as_the_strong_option(client, seeded):
    await sign_in(client, seeded.email["admin"])
    form = await client.get(f"/devices/{seeded.device['reception']}/edit")
    assert "authPriv, with both keys, is the strong identity option" in form.text


async def test_the_device_list_marks_weak_identities(client, seeded, ui_db):
    await sign_in(client, seeded.email["viewer"])
    assert "weak identity</span>" not in (await client.get("/devices")).text
    await _set(ui_db, seeded.device["reception"], ews_endpoints=[{"scheme": "http", "port": 80}])
    listing = (await client.get("/devices")).text
    assert listing.count("weak identity</span>") == 1
